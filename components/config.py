"""The stack's configuration, validated as a whole before any resource is registered.

Every message is one line in words (Pulumi shows a program error's first line in its summary): the
config key, what is wrong with its value and the command or value that fixes it. Values that look
like credentials are never repeated in a message.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable
from urllib.parse import urlsplit

import pulumi
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from fly.regions import region_problem

PROJECT_NAMESPACE = "artifact-slice"
FLY_NAMESPACE = "fly"
# The policy pack's settings (policy/rules.py checks them itself): not the program's to judge.
POLICY_NAMESPACE = "artifact-policy"
# Read as Pulumi secrets, apart from the model: their values are never plain in this program.
SECRET_KEYS = ("clerkPublishableKey", "clerkSecretKey")
FLY_KEYS = {"apiBaseUrl": "api_base_url", "flapsBaseUrl": "flaps_base_url", "apiToken": None}
# Set in plain text, these are refused: they grant access. The publishable key is public by design,
# so plain text only earns a warning.
MUST_BE_SECRET = {f"{PROJECT_NAMESPACE}:clerkSecretKey", f"{FLY_NAMESPACE}:apiToken"}
SHOULD_BE_SECRET = {f"{PROJECT_NAMESPACE}:clerkPublishableKey"}
# Shapes of credentials: Clerk secret keys, Fly tokens (FlyV1 macaroons, fm1/fm2 and fo1 tokens),
# JWTs, and PEM private keys. A value like this in any plain key is a secret in the wrong place.
_SECRET_LOOKING = re.compile(
    r"(sk_(live|test)_[A-Za-z0-9]{8,}|FlyV1\s|\bf[mo][12]_[A-Za-z0-9+/=_-]{16,}|"
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----)")

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_REPOSITORY_PART = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
# Every app name is `<prefix>-<role>` and a Fly app name is a DNS label (63 characters at most);
# the longest role suffix is "-fly-host-basic" / "-fly-host-coder" (15 characters; the runbook's names).
PREFIX_MAX = 63 - len("-fly-host-basic")


class ConfigError(Exception):
    """Invalid stack configuration; the message is meant for the person running ``pulumi``."""


# ---- value checks: each returns None when fine, else the problem and the fix, in words ----

def hostname_problem(value: str, *, what: str = "host name", example: str = "org1.artifact.example.com") -> str | None:
    text = value
    if not text:
        return f"is empty; set a {what} such as {example}"
    if re.search(r"\s", text):
        return f"contains a space; a {what} has none (e.g. {example})"
    if "://" in text or "/" in text:
        return f"is a URL, not a {what}; write the name alone, e.g. {example}"
    if text.endswith("."):
        return f"ends with a dot; drop it, e.g. {example}"
    if text != text.lower():
        return f"has capital letters; DNS names are written in lowercase: use {text.lower()!r}"
    if len(text) > 253:
        return f"is {len(text)} characters long; a {what} has at most 253"
    labels = text.split(".")
    if len(labels) < 2:
        return f"has no dot; a public {what} needs a domain, e.g. {example}"
    for label in labels:
        if not label:
            return f"has an empty part between two dots; e.g. {example}"
        if len(label) > 63:
            return f"has a part of {len(label)} characters ({label[:20]}...); each part between dots has at most 63"
        if label.startswith("-") or label.endswith("-"):
            return (f"has a part that starts or ends with '-' ({label!r}); each part must start and end with a "
                    "letter or digit")
        if not _LABEL.match(label):
            bad = sorted({c for c in label if not (c.isascii() and (c.isalnum() or c == "-"))})
            return (f"has characters a {what} cannot contain ({' '.join(repr(c) for c in bad)}); use letters, digits "
                    "and '-' (internationalised names in their xn-- form)")
    if labels[-1].isdigit():
        return f"ends in a number; use a {what} with a real top-level domain, e.g. {example}"
    return None


def url_problem(value: str, *, example: str = "https://api.machines.dev") -> str | None:
    if re.search(r"\s", value):
        return f"contains a space; write the URL without spaces, e.g. {example}"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        got = f"starts with {parts.scheme}://" if parts.scheme and "://" in value else "has no http:// or https://"
        return f"{got}; use an http(s) URL such as {example}"
    if parts.username or parts.password:
        return "carries credentials (user:password@); put the token in the secret fly:apiToken instead"
    if parts.query or parts.fragment:
        return f"has a query or fragment; use the base URL alone, e.g. {example}"
    try:
        port = parts.port
    except ValueError:
        return f"has a port that is not a number between 1 and 65535; e.g. {example}"
    if port == 0:
        return f"has port 0; use a port between 1 and 65535, e.g. {example}"
    host = parts.hostname or ""
    if not host:
        return f"has no host name; e.g. {example}"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if host == "localhost" or host.endswith(".localhost"):
        return None
    problem = hostname_problem(host, what="host name", example=urlsplit(example).hostname or "api.machines.dev")
    return f"has a host name that {problem}" if problem else None


def image_problem(value: str) -> str | None:
    """Docker's reference grammar (distribution/reference): [registry[:port]/]path[:tag][@sha256:digest]."""
    example = "registry.fly.io/artifact-fly-router:2026.11.1"
    if not value.strip():
        return f"is empty; set an image such as {example}"
    if re.search(r"\s", value):
        return f"contains a space; an image reference has none, e.g. {example}"
    if "://" in value:
        return f"is a URL; write the image without a scheme, e.g. {example}"
    name, _, digest = value.partition("@")
    if digest and not _DIGEST.match(digest):
        return "has a digest that is not sha256: followed by 64 lowercase hex digits"
    tag = ""
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1:]:
        name, _, tag = name.rpartition(":")
        if not _TAG.match(tag):
            return (f"has the tag {tag!r}; a tag is up to 128 letters, digits, '.', '_' or '-', not starting "
                    f"with '.' or '-', e.g. {example}")
    parts = name.split("/")
    registry = parts[0] if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost") else None
    path = parts[1:] if registry else parts
    if registry is not None:
        host, _, port = registry.partition(":")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            return f"has a registry port {port!r} that is not a number between 1 and 65535"
        if host != "localhost" and (problem := hostname_problem(host, what="registry name", example="registry.fly.io")):
            return f"has a registry that {problem}"
    if not path or any(not p for p in path):
        return f"has an empty repository name; e.g. {example}"
    for part in path:
        if part != part.lower():
            return f"has capital letters in its repository ({part!r}); repositories are lowercase"
        if not _REPOSITORY_PART.match(part):
            return (f"has a repository part {part!r} with characters an image name cannot contain; use lowercase "
                    "letters, digits and single '.', '_' or '-' between them")
    if len(name) > 255:
        return "has a name longer than 255 characters"
    return None


def _valid(problem_of: Callable[[str], str | None]) -> AfterValidator:
    """A pydantic check from a function that returns the problem in words (or None)."""
    def check(value: str) -> str:
        if problem := problem_of(value):
            raise ValueError(problem)
        return value
    return AfterValidator(check)


def _org_problem(value: str) -> str | None:
    if not value:
        return "is empty; set the slug of your Fly organization (`fly orgs list` shows it)"
    if len(value) > 63:
        return f"is {len(value)} characters long; a Fly organization slug has at most 63 (`fly orgs list` shows it)"
    if value != value.lower() and _LABEL.match(value.lower()):
        return f"has capital letters; organization slugs are lowercase: use {value.lower()!r} if that is it"
    if not _LABEL.match(value):
        return ("is not an organization slug: use lowercase letters, digits and '-', starting and ending with a "
                "letter or digit (the slug `fly orgs list` shows, not the display name)")
    return None


def _prefix_problem(value: str) -> str | None:
    if not 2 <= len(value) <= PREFIX_MAX:
        return (f"is {len(value)} characters long; Fly app names are `<prefix>-fly-host-basic` and similar, so the "
                f"prefix has 2 to {PREFIX_MAX}")
    if not re.match(r"^[a-z][a-z0-9-]*[a-z0-9]$", value) or "--" in value:
        return ("can't prefix Fly app names: use lowercase letters, digits and single dashes, starting with a letter "
                "and not ending with a dash")
    return None


def _region_check(value: str) -> str | None:
    problem = region_problem(value)
    return f"{problem}; set one with `pulumi config set {PROJECT_NAMESPACE}:primaryRegion <code>`" if problem else None


Image = Annotated[str, _valid(image_problem)]


class FlyEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True)
    api_base_url: Annotated[str, _valid(url_problem)] | None = Field(default=None, alias="apiBaseUrl")
    flaps_base_url: Annotated[str, _valid(url_problem)] | None = Field(default=None, alias="flapsBaseUrl")


class SliceConfig(BaseModel):
    """``artifact-slice:*`` keys of a stack."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    org: Annotated[str, _valid(_org_problem)] = Field(description="the Fly organization slug")
    prefix: Annotated[str, _valid(_prefix_problem)]
    primary_region: Annotated[str, _valid(_region_check)] = Field(alias="primaryRegion")
    nfs_volume_size_gb: int = Field(default=10, alias="nfsVolumeSizeGb", ge=1, le=500)
    protect_volumes: bool = Field(default=True, alias="protectVolumes")
    create_org: bool = Field(default=False, alias="createOrg")
    domain: Annotated[str, _valid(hostname_problem)]
    token_expiry_hours: int = Field(default=8760, alias="tokenExpiryHours", ge=1, le=87600)
    validate_in_up: bool = Field(default=True, alias="validateInUp")
    nfs_gate_timeout: int = Field(default=180, alias="nfsGateTimeoutSeconds", ge=5, le=3600)
    # Image references; unset ones come from the [build] image of the service's fly.toml.
    nfs_image: Image | None = Field(default=None, alias="nfsImage")
    router_image: Image | None = Field(default=None, alias="routerImage")
    exec_image: Image | None = Field(default=None, alias="execImage")
    worker_image: Image | None = Field(default=None, alias="workerImage")
    basic_image: Image | None = Field(default=None, alias="basicImage")
    coder_image: Image | None = Field(default=None, alias="coderImage")

    @classmethod
    def keys(cls) -> dict[str, str]:
        """Config key (camelCase, as in Pulumi.<stack>.yaml) for each field."""
        return {name: (f.alias or name) for name, f in cls.model_fields.items()}


# ---- messages ----

UNITS = {"nfsVolumeSizeGb": " GB", "tokenExpiryHours": " hours", "nfsGateTimeoutSeconds": " seconds"}


def shown(value: Any) -> str:
    """A value as a message may repeat it: never a credential, never a page of text."""
    text = value if isinstance(value, str) else repr(value)
    if looks_secret(text):
        return "(a value that looks like a credential, not repeated here)"
    text = re.sub(r"(://[^/@\s:]*:)[^/@\s]*@", r"\1***@", text)  # a password in a URL
    return repr(text if len(text) <= 40 else text[:37] + "...")


def looks_secret(value: Any) -> bool:
    return isinstance(value, str) and bool(_SECRET_LOOKING.search(value))


def _closest(name: str, known: list[str]) -> str | None:
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _describe(error: dict[str, Any], key: str) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    unit = UNITS.get(key, "")
    if kind == "missing":
        return f"is required; set it with `pulumi config set {PROJECT_NAMESPACE}:{key} <value>`"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return (f"is not a whole number (an integer); set digits only, e.g. "
                f"`pulumi config set {PROJECT_NAMESPACE}:{key} 10`")
    if kind in ("bool_parsing", "bool_type"):
        return f"is not true or false; `pulumi config set {PROJECT_NAMESPACE}:{key} true` (or false)"
    if kind in ("greater_than_equal", "greater_than"):
        return f"is too small; the least allowed is {ctx.get('ge', ctx.get('gt'))}{unit}"
    if kind in ("less_than_equal", "less_than"):
        return f"is too large; the most allowed is {ctx.get('le', ctx.get('lt'))}{unit}"
    if kind in ("string_type",):
        return "is not text; set it as a plain string"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])  # pydantic's own words; the fields above carry no regex patterns


def _explain(exc: ValidationError, namespace: str, keys: dict[str, str]) -> list[str]:
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        key = keys.get(name, name)
        if error["type"] == "extra_forbidden":
            continue  # reported by _unknown_keys, with a suggestion
        given = error.get("input")
        got = "" if error["type"] == "missing" or isinstance(given, dict) else f" (got {shown(given)})"
        lines.append(f"{namespace}:{key}{got}: {_describe(error, key)}")
    return lines


# ---- the whole stack config ----

@dataclass(frozen=True)
class StackConfig:
    slice: SliceConfig
    endpoint: FlyEndpoint
    warnings: list[str] = field(default_factory=list)


def _unknown_keys(values: dict[str, Any], secret_keys: set[str]) -> list[str]:
    project = [*SliceConfig.keys().values(), *SECRET_KEYS]
    known = {PROJECT_NAMESPACE: project, FLY_NAMESPACE: list(FLY_KEYS)}
    everything = [f"{ns}:{k}" for ns, keys in known.items() for k in keys]
    problems = []
    for full_key in values:
        namespace, _, key = full_key.partition(":")
        if namespace in known:
            if key in known[namespace]:
                continue
            guess = _closest(key, known[namespace]) or _closest(key, [k for ns in known for k in known[ns]])
            guess_full = next((k for k in everything if k.endswith(f":{guess}")), None) if guess else None
        elif namespace == POLICY_NAMESPACE:
            continue
        elif difflib.get_close_matches(namespace, list(known), n=1, cutoff=0.6):
            guess_full = _closest(full_key, everything)
        else:
            continue  # another provider's namespace: not ours to judge
        secret = " --secret" if full_key in secret_keys or guess_full in MUST_BE_SECRET | SHOULD_BE_SECRET else ""
        hint = (f"; did you mean {guess_full}? Rename it: `pulumi config rm {full_key}` then "
                f"`pulumi config set{secret} {guess_full} <value>`") if guess_full else (
            f"; remove it with `pulumi config rm {full_key}`")
        problems.append(f"{full_key}: is not a known setting{hint}")
    return problems


def _secret_problems(values: dict[str, Any], secret_keys: set[str]) -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    for full_key, value in values.items():
        if full_key in secret_keys or value is None:
            continue
        fix = f"set it as a secret: `pulumi config set --secret {full_key} <value>`"
        if full_key in MUST_BE_SECRET:
            errors.append(f"{full_key}: is set in plain text (readable in Pulumi.<stack>.yaml); {fix}")
        elif full_key in SHOULD_BE_SECRET:
            warnings.append(f"{full_key} is set in plain text; this project keeps it secret: {fix}")
        elif looks_secret(value):
            errors.append(f"{full_key}: holds what looks like a credential, in plain text; if it belongs there, {fix}; "
                          f"otherwise remove it with `pulumi config rm {full_key}`")
    for full_key in sorted(MUST_BE_SECRET | SHOULD_BE_SECRET):
        value = values.get(full_key)
        if isinstance(value, str) and (not value.strip() or value != value.strip()):
            what = "is empty" if not value.strip() else "has spaces or a line break around it"
            errors.append(f"{full_key}: {what}; set it again: `printf '%s' \"$VALUE\" | pulumi config set --secret "
                          f"{full_key}`")
    for key, kind, prefix, other in (("clerkSecretKey", "secret", "sk_", "pk_"),
                                     ("clerkPublishableKey", "publishable", "pk_", "sk_")):
        value = (values.get(f"{PROJECT_NAMESPACE}:{key}") or "").strip()
        if value and not value.startswith(prefix):
            swapped = " (it looks like the other Clerk key: are the two swapped?)" if value.startswith(other) else ""
            errors.append(f"{PROJECT_NAMESPACE}:{key}: is not a Clerk {kind} key, which starts with {prefix}live_ or "
                          f"{prefix}test_{swapped}; set the right one with "
                          f"`pulumi config set --secret {PROJECT_NAMESPACE}:{key} <value>` (Clerk dashboard, API keys)")
    return errors, warnings


def parse_stack_config(values: dict[str, Any], stack: str, secret_keys: set[str] | frozenset[str] = frozenset()
                       ) -> StackConfig:
    """Validate the stack's config as the engine hands it over: full keys (``artifact-slice:org``,
    ``fly:apiBaseUrl``) to string values, and the set of keys that are secrets. Every problem is
    collected; one ConfigError reports them all on one line."""
    problems = _unknown_keys(values, set(secret_keys))
    secret_errors, warnings = _secret_problems(values, set(secret_keys))
    problems += secret_errors
    project = {k.partition(":")[2]: v for k, v in values.items()
               if k.startswith(f"{PROJECT_NAMESPACE}:") and k.partition(":")[2] in SliceConfig.keys().values()}
    fly = {k.partition(":")[2]: v for k, v in values.items()
           if k.startswith(f"{FLY_NAMESPACE}:") and FLY_KEYS.get(k.partition(":")[2])}
    project.setdefault("prefix", stack)
    if "domain" not in project and stack == "local":
        project["domain"] = f"{project['prefix']}.artifact.local"
    slice_config = endpoint = None
    try:
        slice_config = SliceConfig.model_validate(project)
    except ValidationError as exc:
        problems += _explain(exc, PROJECT_NAMESPACE, SliceConfig.keys())
    try:
        endpoint = FlyEndpoint.model_validate(fly)
    except ValidationError as exc:
        problems += _explain(exc, FLY_NAMESPACE, {v: k for k, v in FLY_KEYS.items() if v})
    if problems or slice_config is None or endpoint is None:
        # One line: Pulumi shows the first line of a program error in its summary.
        raise ConfigError("invalid stack configuration: " + "; ".join(problems))
    return StackConfig(slice_config, endpoint, warnings)


def parse_slice_config(raw: dict[str, Any], stack: str) -> SliceConfig:
    """The ``artifact-slice:`` keys alone (short names), e.g. for tools that build a config."""
    return parse_stack_config({f"{PROJECT_NAMESPACE}:{k}": v for k, v in raw.items()}, stack).slice


class SliceSecrets:
    """Secret config, as Pulumi secrets (never plain values in this program)."""

    def __init__(self, namespace: str = PROJECT_NAMESPACE) -> None:
        config = pulumi.Config(namespace)
        self.clerk_publishable_key = config.get_secret("clerkPublishableKey")
        self.clerk_secret_key = config.get_secret("clerkSecretKey")


def _engine_config() -> tuple[dict[str, Any], set[str]]:
    """The stack's config and its secret keys as the language host hands them to the program (the
    SDK's config map, else the PULUMI_CONFIG environment older hosts set)."""
    from pulumi.runtime import config as runtime_config

    values = dict(runtime_config.CONFIG.get() or {}) or dict(runtime_config.get_config_env())
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys |= {k for k in values if runtime_config.is_config_secret(k)}
    return values, secret_keys


def load_from_pulumi() -> tuple[SliceConfig, FlyEndpoint, pulumi.Output[str] | None]:
    """Read and validate the stack's config; unknown keys and plain-text credentials are refused."""
    values, secret_keys = _engine_config()
    parsed = parse_stack_config(values, pulumi.get_stack(), secret_keys)
    for warning in parsed.warnings:
        pulumi.log.warn(warning)
    token = pulumi.Config(FLY_NAMESPACE).get_secret("apiToken")
    return parsed.slice, parsed.endpoint, token
