"""The stack's configuration as one pydantic model, validated before any resource is registered.

Every message names the config key, what is wrong with its value and how to fix it.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_NAMESPACE = "artifact-slice"
FLY_NAMESPACE = "fly"

_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$")
# registry/repository[:tag][@sha256:digest], lowercase repository as OCI requires.
_IMAGE = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]{1,128})?(@sha256:[a-f0-9]{64})?$")
_DOMAIN = re.compile(r"^([a-z0-9-]{1,63}\.)+[a-z]{2,63}$")
# Secret keys are read as Pulumi secrets, apart from the model (their values are never plain here).
SECRET_KEYS = ("clerkPublishableKey", "clerkSecretKey")


class FlyEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True)
    api_base_url: str | None = Field(default=None, alias="apiBaseUrl")
    flaps_base_url: str | None = Field(default=None, alias="flapsBaseUrl")

    @field_validator("api_base_url", "flaps_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL; use e.g. https://api.machines.dev")
        return value


class SliceConfig(BaseModel):
    """``artifact-slice:*`` keys of a stack."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    org: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="the Fly organization slug")
    prefix: str
    primary_region: str = Field(alias="primaryRegion", pattern=r"^[a-z]{3}$")
    nfs_volume_size_gb: int = Field(default=10, alias="nfsVolumeSizeGb", ge=1, le=500)
    protect_volumes: bool = Field(default=True, alias="protectVolumes")
    create_org: bool = Field(default=False, alias="createOrg")
    domain: str
    token_expiry_hours: int = Field(default=8760, alias="tokenExpiryHours", ge=1, le=87600)
    validate_in_up: bool = Field(default=True, alias="validateInUp")
    nfs_gate_timeout: int = Field(default=180, alias="nfsGateTimeoutSeconds", ge=5, le=3600)
    # Image references; unset ones come from the [build] image of the service's fly.toml.
    nfs_image: str | None = Field(default=None, alias="nfsImage")
    router_image: str | None = Field(default=None, alias="routerImage")
    exec_image: str | None = Field(default=None, alias="execImage")
    worker_image: str | None = Field(default=None, alias="workerImage")
    basic_image: str | None = Field(default=None, alias="basicImage")
    coder_image: str | None = Field(default=None, alias="coderImage")

    @field_validator("nfs_image", "router_image", "exec_image", "worker_image", "basic_image", "coder_image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE.match(value):
            raise ValueError(f"{value!r} is not an image reference; use registry/repository:tag, "
                             "e.g. registry.fly.io/artifact-fly-router:2026.11.1")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not _DOMAIN.match(value) or len(value) > 253:
            raise ValueError(f"{value!r} is not a DNS name; use e.g. org1.artifact.example.com")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError(
                f"{value!r} can't prefix Fly app names: use 2-42 lowercase letters, digits and dashes, "
                "starting with a letter")
        return value

    @classmethod
    def keys(cls) -> dict[str, str]:
        """Config key (camelCase, as in Pulumi.<stack>.yaml) for each field."""
        return {name: (field.alias or name) for name, field in cls.model_fields.items()}


class ConfigError(Exception):
    """Invalid stack configuration; the message is meant for the person running ``pulumi``."""


def explain(exc: ValidationError, namespace: str, keys: dict[str, str]) -> str:
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        key = keys.get(field, field)
        given = error.get("input")
        shown = "" if error["type"] == "missing" or isinstance(given, dict) else f" (got {given!r})"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = f"is required; set it with `pulumi config set {namespace}:{key} <value>`"
        elif error["type"] == "extra_forbidden":
            message = "is not a known setting; check its spelling"
        lines.append(f"{namespace}:{key}{shown}: {message}")
    # One line: Pulumi shows the first line of a program error in its summary.
    return "invalid stack configuration: " + "; ".join(lines)


def parse_slice_config(raw: dict[str, Any], stack: str) -> SliceConfig:
    values = dict(raw)
    values.setdefault("prefix", stack)
    values.setdefault("domain", f"{values['prefix']}.artifact.local" if stack == "local" else None)
    if values["domain"] is None:
        del values["domain"]
    try:
        return SliceConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(explain(exc, PROJECT_NAMESPACE, SliceConfig.keys())) from None


def parse_fly_endpoint(raw: dict[str, Any]) -> FlyEndpoint:
    try:
        return FlyEndpoint.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain(exc, FLY_NAMESPACE, {"api_base_url": "apiBaseUrl",
                                                        "flaps_base_url": "flapsBaseUrl"})) from None


def _namespace_values(namespace: str, names: list[str]) -> dict[str, Any]:
    config = pulumi.Config(namespace)
    values: dict[str, Any] = {}
    for name in names:
        # Pulumi hands config values over as strings; pydantic's lax mode turns "10" and "false" into
        # the int and bool the model declares, and refuses what doesn't convert, naming the key.
        value = config.get(name)
        if value is not None:
            values[name] = value
    return values


class SliceSecrets:
    """Secret config, as Pulumi secrets (never plain values in this program)."""

    def __init__(self, namespace: str = PROJECT_NAMESPACE) -> None:
        config = pulumi.Config(namespace)
        self.clerk_publishable_key = config.get_secret("clerkPublishableKey")
        self.clerk_secret_key = config.get_secret("clerkSecretKey")


def load_from_pulumi() -> tuple[SliceConfig, FlyEndpoint, pulumi.Output[str] | None]:
    """Read and validate the stack's config; unknown ``artifact-slice:`` keys are refused too."""
    stack = pulumi.get_stack()
    all_config = pulumi.runtime.get_config_env() if hasattr(pulumi.runtime, "get_config_env") else {}
    names = list(SliceConfig.keys().values())
    raw = _namespace_values(PROJECT_NAMESPACE, names)
    for full_key in all_config:
        namespace, _, key = full_key.partition(":")
        if namespace == PROJECT_NAMESPACE and key not in names and key not in raw and key not in SECRET_KEYS:
            raw[key] = all_config[full_key]
    slice_config = parse_slice_config(raw, stack)
    endpoint = parse_fly_endpoint(_namespace_values(FLY_NAMESPACE, ["apiBaseUrl", "flapsBaseUrl"]))
    token = pulumi.Config(FLY_NAMESPACE).get_secret("apiToken")
    return slice_config, endpoint, token
