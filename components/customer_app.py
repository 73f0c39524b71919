"""``CustomerApp``: one customer's app of a slice, ``<prefix>-cust-<customer>``, on the project's Fly resource
definitions (``fly.providers``: App, AppSecrets, Volume, Machine, IpAddress), so it has their adoption, in-place
update under a lease, volume extend and replace-on-region rules, and nothing of its own.

``CustomerSettings`` is what a customer app is made of (region, image, env, size, auto stop/start, volume size),
validated in words before anything runs: reserved env names (what the slice sets: ``ARTIFACT_CUSTOMER``,
``PRIMARY_REGION``, the slice's ``DC_*`` names, Fly's ``FLY_*``), env values that look like credentials (the same
check the slice's config makes), image references (the slice's own grammar check) from the registries the slice
itself uses, names by full match. Messages never repeat a value.

A region change replaces the volume and the machine (Fly cannot move either): the new volume is empty, the old
one and its data are deleted with the old machine. ``check_change`` refuses a volume shrink (Fly volumes only
grow) and says what a region move means before any engine run.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fly.appconfig.machines import MEMORY_MB_PER_CPU
from fly.appconfig.schema import PRESETS
from fly.providers import App, AppSecrets, FlyConnectionArgs, IpAddress, Machine, Volume, inherit_connection
from fly.regions import region_problem

from controlplane.guard import CUSTOMER_MARKER

from .config import image_problem, looks_secret

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set by the slice on every customer machine; a caller's env must not override who the machine is.
RESERVED_ENV = frozenset({"ARTIFACT_CUSTOMER", "PRIMARY_REGION", "FLY_PROCESS_GROUP"})
RESERVED_ENV_PREFIXES = ("FLY_", "DC_")
VOLUME_NAME = "data"
VOLUME_PATH = "/data"
MACHINE_NAME = "agent"
WAIT_SECONDS = 120
CPU_COUNTS = {kind: tuple(sorted({p["cpus"] for p in PRESETS.values() if p["cpu_kind"] == kind and "gpu_kind" not in p}))
              for kind in ("shared", "performance")}


class CustomerInputError(ValueError):
    """Bad input, in words: the argument, the problem, the fix; never the value. ``problems``: (argument, words)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{where}: {words}" for where, words in problems))


def registry_of(image: str) -> str:
    """The registry host of an image reference, as Docker resolves it (no host: Docker Hub)."""
    first, sep, _rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.partition(":")[0] if first.startswith("localhost") else first
    return "docker.io"


class CustomerSettings(BaseModel):
    """A customer app's settings (the secrets apart: they are Pulumi secrets, never in this model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str
    image: str
    env: dict[str, str] = Field(default_factory=dict)
    cpu_kind: Literal["shared", "performance"] = "shared"
    cpus: int = 1
    memory_mb: int = 256
    auto_stop: Literal["off", "stop", "suspend"] = "suspend"
    auto_start: bool = True
    volume_size_gb: int = Field(default=1, ge=0, le=500)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if problem := region_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if problem := image_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for i, (name, text) in enumerate(value.items(), 1):
            if not ENV_NAME_RE.fullmatch(name):
                problems.append(f"name #{i} is not a valid environment variable name (letters, digits and _, not "
                                "starting with a digit)")
            elif name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
                problems.append(f"{name} is set by the slice (reserved: ARTIFACT_CUSTOMER, PRIMARY_REGION, DC_*, "
                                "FLY_*); remove it")
            elif looks_secret(text):
                problems.append(f"{name} holds what looks like a credential; pass it in `secrets` instead (Fly "
                                "secrets, never shown or logged)")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _size(self) -> CustomerSettings:
        counts = CPU_COUNTS[self.cpu_kind]
        if self.cpus not in counts:
            raise ValueError(f"cpus={self.cpus} is not a {self.cpu_kind} size; use one of {counts}")
        lo, hi = (self.cpus * m for m in MEMORY_MB_PER_CPU[self.cpu_kind])
        if not lo <= self.memory_mb <= hi or self.memory_mb % 256:
            raise ValueError(f"memory_mb={self.memory_mb} does not fit {self.cpus} {self.cpu_kind} CPU(s): use a "
                             f"multiple of 256 from {lo} to {hi}")
        return self


def defaults(template: dict[str, Any], region: str, image: str) -> dict[str, Any]:
    """A new customer's settings: the worker pool's template (image, guest, auto stop/start), one 1 GB volume."""
    guest = template.get("guest") or {}
    service = (template.get("services") or [{}])[0]
    return {"region": region, "image": template.get("image") or image, "env": {},
            "cpu_kind": guest.get("cpu_kind", "shared"), "cpus": guest.get("cpus", 1),
            "memory_mb": guest.get("memory_mb", 256), "auto_stop": service.get("autostop", "suspend"),
            "auto_start": service.get("autostart", True), "volume_size_gb": 1}


def settings_from(values: dict[str, Any], *, registries: frozenset[str] | set[str] = frozenset()) -> CustomerSettings:
    """Validated settings, or ``CustomerInputError`` naming each argument and problem (never a value)."""
    try:
        settings = CustomerSettings.model_validate(values)
    except ValidationError as exc:
        raise CustomerInputError([(".".join(str(p) for p in error["loc"][:1]) or "input",
                                   str(error["msg"]).removeprefix("Value error, "))
                                  for error in exc.errors(include_input=False, include_url=False)]) from None
    if registries and registry_of(settings.image) not in registries:
        raise CustomerInputError([("image", "its registry is not one the slice uses; use an image from "
                                            f"{', '.join(sorted(registries))}")])
    return settings


def field_problems(requested: dict[str, Any], base: dict[str, Any], registries: frozenset[str] | set[str]) -> None:
    """``CustomerInputError`` for a given argument that is wrong on its own (env, image, region, a value's type),
    before anything runs; how the size arguments fit together is checked against the customer's current
    settings, which only the stack knows."""
    try:
        settings_from({**base, **requested}, registries=registries)
    except CustomerInputError as exc:
        own = [(where, words) for where, words in exc.problems if where in requested]
        if own:
            raise CustomerInputError(own) from None
    size = {k: requested[k] for k in ("cpu_kind", "cpus", "memory_mb") if k in requested}
    offered = sorted({n for counts in CPU_COUNTS.values() for n in counts})
    if isinstance(size.get("cpus"), int) and size["cpus"] not in offered:
        raise CustomerInputError([("cpus", f"{size['cpus']} is not a CPU count Fly offers; use one of {offered}")])
    if isinstance(size.get("memory_mb"), int) and size["memory_mb"] % 256:
        raise CustomerInputError([("memory_mb", f"{size['memory_mb']} is not a multiple of 256")])
    if len(size) == 3:  # the whole size given: how it fits together needs nothing of the current settings
        settings_from({**base, **requested}, registries=registries)


def check_change(current: CustomerSettings | None, wanted: CustomerSettings) -> list[str]:
    """What a change from ``current`` to ``wanted`` means beyond an update in place (notes for the caller);
    ``CustomerInputError`` for a change that is refused."""
    if current is None:
        return []
    notes = []
    if wanted.volume_size_gb < current.volume_size_gb:
        what = "removing it" if wanted.volume_size_gb == 0 else f"{wanted.volume_size_gb} GB"
        raise CustomerInputError([(
            "volume_size_gb", f"the volume is {current.volume_size_gb} GB and Fly volumes only grow ({what} is "
            f"refused, nothing was changed); keep {current.volume_size_gb} or more, or destroy the customer's app to "
            "drop its data")])
    if current.volume_size_gb == 0 and wanted.volume_size_gb > 0:
        notes.append("a volume is added: the machine is replaced to mount it")
    if wanted.region != current.region:
        notes.append(f"region {current.region} -> {wanted.region}: Fly cannot move a machine or a volume, so both are "
                     f"replaced; the data does not move (the new volume in {wanted.region} is empty and the old one "
                     f"in {current.region} is deleted with its data)" if current.volume_size_gb else
                     f"region {current.region} -> {wanted.region}: the machine is replaced in {wanted.region}")
    return notes


def machine_config(template: dict[str, Any], settings: CustomerSettings, *, customer: str,
                   volume_id: pulumi.Input[str] | None) -> dict[str, Any]:
    config = copy.deepcopy(template)
    config.pop("mounts", None)
    config["image"] = settings.image
    config["env"] = {**(config.get("env") or {}), **settings.env, "PRIMARY_REGION": settings.region,
                     "ARTIFACT_CUSTOMER": customer}
    config["guest"] = {"cpu_kind": settings.cpu_kind, "cpus": settings.cpus, "memory_mb": settings.memory_mb}
    services = config.get("services") or [{"protocol": "tcp", "internal_port": 8080, "min_machines_running": 0,
                                           "ports": [{"port": 80, "handlers": ["http"], "force_https": True},
                                                     {"port": 443, "handlers": ["tls", "http"]}]}]
    config["services"] = [{**s, "autostop": settings.auto_stop, "autostart": settings.auto_start} for s in services]
    config["metadata"] = {**(config.get("metadata") or {}), CUSTOMER_MARKER: customer}
    if volume_id is not None:
        config["mounts"] = [{"volume": volume_id, "path": VOLUME_PATH, "name": VOLUME_NAME}]
    return config


class CustomerApp(pulumi.ComponentResource):
    """``secrets``: name -> Pulumi secret; the machine takes their version as ``min_secrets_version``."""

    def __init__(self, name: str, *, prefix: str, customer: str, org_slug: str, settings: CustomerSettings,
                 template: dict[str, Any], secrets: dict[str, pulumi.Input[str]] | None = None,
                 connection: FlyConnectionArgs | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("artifact:slice:CustomerApp", name, None, opts)
        inherit_connection(self, opts, connection)
        child = pulumi.ResourceOptions(parent=self)
        self.app_name = f"{prefix}-cust-{customer}"
        self.app = App("app", name=self.app_name, org_slug=org_slug, opts=child)
        self.flycast = IpAddress("flycast", app=self.app.name, type="private_v6", org_slug=org_slug, opts=child)
        self.secrets = (AppSecrets("secrets", app=self.app.name, values=pulumi.Output.secret(secrets), opts=child)
                        if secrets else None)
        self.volume = (Volume("volume", app=self.app.name, name=VOLUME_NAME, region=settings.region,
                              size_gb=settings.volume_size_gb, opts=child)
                       if settings.volume_size_gb else None)
        config = machine_config(template, settings, customer=customer,
                                volume_id=self.volume.mount_id if self.volume else None)
        self.machine = Machine("machine", app=self.app.name, name=MACHINE_NAME, region=settings.region, config=config,
                               min_secrets_version=self.secrets.version if self.secrets else None,
                               wait_timeout=WAIT_SECONDS, opts=child)
        self.register_outputs({"app": self.app.name, "machine": self.machine.machine_id})
