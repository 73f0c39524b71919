"""The slice's policies as plain functions: (resource type, inputs, protect, settings) -> violations in words.

`__main__.py` wires them into a CrossGuard pack; nothing here imports `pulumi_policy`, so the rules read as
what they are. A rule sees a resource's inputs as the engine hands them to the pack (after the provider's
`check`); a value the engine does not know yet (a preview of something that depends on a resource still to
be made) raises the pack's UnknownValueError on access, and the pack reports that the rule runs at `up`.

Enforcement levels are set in one place, `DEFAULT_LEVELS`, and overridden per stack by stack config
(`pulumi config set artifact-policy:<policy> advisory|mandatory|disabled`) or by Pulumi's own
`--policy-pack-config` file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.config import POLICY_NAMESPACE, looks_secret
from fly.regions import REGIONS

FLY = "pulumi-python:dynamic/fly:"
MACHINE, VOLUME, IP_ADDRESS, ORG_TOKEN = (f"{FLY}Machine", f"{FLY}Volume", f"{FLY}IpAddress", f"{FLY}OrgToken")
WORKER_POOL = "artifact:slice:WorkerPool"  # the component; its input `template` is what fly-exec launches
CONFIG_NAMESPACE = POLICY_NAMESPACE

# The one place enforcement levels are set. "images-pinned-by-digest" is mandatory on production stacks.
DEFAULT_LEVELS: dict[str, str] = {
    "worker-pool-suspends": "mandatory",
    "token-expiry-bounded": "mandatory",
    "no-public-address": "mandatory",
    "data-volumes-protected": "mandatory",
    "machine-size-allowed": "mandatory",
    "region-allowed": "mandatory",
    "images-pinned-by-digest": "advisory",
    "no-credentials-in-env": "mandatory",
}
LEVELS = ("advisory", "mandatory", "disabled")

# Apps that must stay private (Flycast only): the NFS tier, fly-exec and the self-hosted agent VM.
PRIVATE_APP_SUFFIXES = ("-nfs", "-fly-exec", "-vm")
PUBLIC_IP_TYPES = ("v4", "shared_v4", "v6")
# The slice's machine sizes (deploy/fly.*.toml) and room to grow; named as Fly's presets (`fly platform vm-sizes`).
DEFAULT_SIZES = ("shared-cpu-1x", "shared-cpu-2x", "shared-cpu-4x", "performance-1x", "performance-2x")
DEFAULT_MAX_MEMORY_MB = 8192
DEFAULT_MAX_TOKEN_HOURS = 8760  # a year: the slice's own default (artifact-slice:tokenExpiryHours)
DEFAULT_EPHEMERAL = r"(^|-)e2e(-|$)"  # throwaway stacks: org1-e2e-<run>, e2e-<id>
DEFAULT_PRODUCTION = r"(^|-)prod(uction)?(-|$)"


@dataclass(frozen=True)
class Settings:
    stack: str = ""
    levels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    max_token_hours: int = DEFAULT_MAX_TOKEN_HOURS
    allowed_regions: frozenset[str] = frozenset(REGIONS)
    allowed_sizes: frozenset[str] = frozenset(DEFAULT_SIZES)
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB
    ephemeral: bool = False
    production: bool = False


class SettingsError(ValueError):
    """A bad `artifact-policy:*` value; the message names the key and the fix."""


def _as_list(key: str, raw: str) -> list[str]:
    text = raw.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: is not a JSON list ({exc.msg}); "
                                'write e.g. ["syd","ams"] or syd,ams') from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: must list names, e.g. syd,ams")
        return [v.strip() for v in value if v.strip()]
    return [v.strip() for v in text.split(",") if v.strip()]


def _as_int(key: str, raw: str, least: int) -> int:
    if not raw.strip().isdigit() or int(raw) < least:
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {raw!r} is not a whole number of at least {least}")
    return int(raw)


def _as_bool(key: str, raw: str) -> bool:
    if raw.strip().lower() not in ("true", "false"):
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {raw!r} is not true or false")
    return raw.strip().lower() == "true"


def settings_from(stack: str, config: Mapping[str, str]) -> Settings:
    """Settings for ``stack`` from its `artifact-policy:*` config (keys without the namespace)."""
    known = {"maxTokenExpiryHours", "allowedRegions", "allowedSizes", "maxMemoryMb", "ephemeral", "production",
             *DEFAULT_LEVELS}
    unknown = sorted(set(config) - known)
    if unknown:
        raise SettingsError(f"{CONFIG_NAMESPACE}:{unknown[0]}: is not a setting of the slice's policy pack; "
                            f"known: {', '.join(sorted(known))}")
    levels = dict(DEFAULT_LEVELS)
    for name in DEFAULT_LEVELS:
        if name in config:
            level = config[name].strip().lower()
            if level not in LEVELS:
                raise SettingsError(f"{CONFIG_NAMESPACE}:{name}: {config[name]!r} is not one of {', '.join(LEVELS)}")
            levels[name] = level
    production = (_as_bool("production", config["production"]) if "production" in config
                  else bool(re.search(DEFAULT_PRODUCTION, stack)))
    if production and "images-pinned-by-digest" not in config:
        levels["images-pinned-by-digest"] = "mandatory"
    regions = frozenset(_as_list("allowedRegions", config["allowedRegions"])) if "allowedRegions" in config \
        else frozenset(REGIONS)
    if bad := sorted(regions - set(REGIONS)):
        raise SettingsError(f"{CONFIG_NAMESPACE}:allowedRegions: {bad[0]!r} is not a Fly region code "
                            "(three letters such as syd)")
    return Settings(
        stack=stack, levels=levels,
        max_token_hours=_as_int("maxTokenExpiryHours", config["maxTokenExpiryHours"], 1)
        if "maxTokenExpiryHours" in config else DEFAULT_MAX_TOKEN_HOURS,
        allowed_regions=regions,
        allowed_sizes=frozenset(_as_list("allowedSizes", config["allowedSizes"])) if "allowedSizes" in config
        else frozenset(DEFAULT_SIZES),
        max_memory_mb=_as_int("maxMemoryMb", config["maxMemoryMb"], 256) if "maxMemoryMb" in config
        else DEFAULT_MAX_MEMORY_MB,
        ephemeral=_as_bool("ephemeral", config["ephemeral"]) if "ephemeral" in config
        else bool(re.search(DEFAULT_EPHEMERAL, stack)),
        production=production)


# ---- the rules: each yields violations in words ----

Rule = Callable[[str, Mapping[str, Any], bool, Settings], Iterable[str]]


def _app_of(props: Mapping[str, Any]) -> str:
    return str(props["app"])


def _machine_configs(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(what, machine config) pairs: a machine's config, or the worker pool's template."""
    if resource_type == MACHINE:
        return [(f"machine {props['name']} of app {props['app']}", props["config"])]
    if resource_type == WORKER_POOL:
        return [("the worker pool's machine template", props["template"])]
    return []


def _autostop(value: Any) -> str:
    """Fly's `autostop`: "off", "stop", "suspend", or the booleans older configs use (true means stop)."""
    if value is None or value is False:
        return "off"
    return "stop" if value is True else str(value)


def worker_pool_suspends(resource_type: str, props: Mapping[str, Any], protect: bool, s: Settings) -> Iterable[str]:
    if resource_type == WORKER_POOL:
        configs = _machine_configs(resource_type, props)
    elif resource_type == MACHINE and _app_of(props).endswith("-worker-pool"):
        configs = _machine_configs(resource_type, props)
    else:
        return
    for what, config in configs:
        services = config["services"] if "services" in config else []
        modes = sorted({_autostop(service["autostop"] if "autostop" in service else None)
                        for service in services}) or ["off"]
        if modes != ["suspend"]:
            yield (f"{what} idles its machines as {'/'.join(modes)}; worker machines must be suspended when idle "
                   "(fast resume): set auto_stop_machines = \"suspend\" in deploy/fly.worker-pool.toml")


def token_expiry_bounded(resource_type: str, props: Mapping[str, Any], protect: bool, s: Settings) -> Iterable[str]:
    if resource_type != ORG_TOKEN:
        return
    expiry = props["expiry"] if "expiry" in props else None
    hours = int(str(expiry)[:-1]) if expiry and str(expiry)[:-1].isdigit() else None
    if hours is None:
        yield (f"token {props['name']} never expires; set artifact-slice:tokenExpiryHours to at most "
               f"{s.max_token_hours}")
    elif hours > s.max_token_hours:
        yield (f"token {props['name']} expires after {hours} hours, beyond the bound of {s.max_token_hours}; "
               f"set artifact-slice:tokenExpiryHours to at most {s.max_token_hours} (or raise the bound with "
               f"artifact-policy:maxTokenExpiryHours)")


def no_public_address(resource_type: str, props: Mapping[str, Any], protect: bool, s: Settings) -> Iterable[str]:
    if resource_type != IP_ADDRESS:
        return
    app = _app_of(props)
    if app.endswith(PRIVATE_APP_SUFFIXES) and str(props["type"]) in PUBLIC_IP_TYPES:
        yield (f"app {app} gets a public {props['type']} address; the NFS tier, fly-exec and the self-hosted VM "
               "are reached over Flycast only: use type private_v6")


def data_volumes_protected(resource_type: str, props: Mapping[str, Any], protect: bool, s: Settings) -> Iterable[str]:
    if resource_type != VOLUME or s.ephemeral or protect:
        return
    yield (f"volume {props['name']} of app {props['app']} is not protected on stack {s.stack!r}, which is not "
           "ephemeral: `pulumi destroy` would delete its data. Set artifact-slice:protectVolumes true (or mark the "
           "stack ephemeral with artifact-policy:ephemeral true)")


def machine_size_allowed(resource_type: str, props: Mapping[str, Any], protect: bool, s: Settings) -> Iterable[str]:
    for what, config in _machine_configs(resource_type, props):
        if "guest" not in config:
            continue
        guest = config["guest"]
        kind, cpus, memory = str(guest["cpu_kind"]), int(guest["cpus"]), int(guest["memory_mb"])
        size = f"{'shared-cpu' if kind == 'shared' else kind}-{cpus}x"
        if size not in s.allowed_sizes:
            yield (f"{what} is {size}, not one of the slice's sizes ({', '.join(sorted(s.allowed_sizes))}); "
                   "pick one, or allow it with artifact-policy:allowedSizes")
        if memory > s.max_memory_mb:
            yield (f"{what} has {memory} MB of memory, above the slice's {s.max_memory_mb} MB; lower it, or raise "
                   "artifact-policy:maxMemoryMb")


def region_allowed(resource_type: str, props: Mapping[str, Any], protect: bool, s: Settings) -> Iterable[str]:
    if resource_type not in (MACHINE, VOLUME):
        return
    region = str(props["region"])
    if region not in s.allowed_regions:
        yield (f"{resource_type.removeprefix(FLY).lower()} {props['name']} of app {props['app']} is in {region}, "
               f"not one of the stack's regions ({', '.join(sorted(s.allowed_regions))}); set "
               "artifact-slice:primaryRegion to one of them, or allow it with artifact-policy:allowedRegions")


def images_pinned_by_digest(resource_type: str, props: Mapping[str, Any], protect: bool,
                            s: Settings) -> Iterable[str]:
    for what, config in _machine_configs(resource_type, props):
        image = str(config["image"])
        if "@sha256:" not in image:
            where = "a production stack" if s.production else f"stack {s.stack!r}"
            yield (f"{what} runs {image}, a tag that can move; on {where} pin it by digest "
                   "(image@sha256:...) so a preview shows exactly what will run")


def no_credentials_in_env(resource_type: str, props: Mapping[str, Any], protect: bool, s: Settings) -> Iterable[str]:
    for what, config in _machine_configs(resource_type, props):
        env = config["env"] if "env" in config else {}
        leaked = sorted(k for k in env if looks_secret(str(env[k])))
        if leaked:
            yield (f"{what} has a credential-looking value in its plain env ({', '.join(leaked)}; value not "
                   "repeated); env is stored in the machine config in plain text: pass it as a Fly secret "
                   "(AppSecrets) instead")


@dataclass(frozen=True)
class PolicySpec:
    name: str
    description: str
    rule: Rule


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec("worker-pool-suspends", "The worker pool's machines suspend when idle.", worker_pool_suspends),
    PolicySpec("token-expiry-bounded", "The control plane's org token expires within the configured bound.",
               token_expiry_bounded),
    PolicySpec("no-public-address", "The NFS app, fly-exec and the self-hosted VM have no public address.",
               no_public_address),
    PolicySpec("data-volumes-protected", "Data volumes are protected on stacks that are not ephemeral.",
               data_volumes_protected),
    PolicySpec("machine-size-allowed", "Machine sizes are within the slice's allowlist.", machine_size_allowed),
    PolicySpec("region-allowed", "Machines and volumes are in the stack's allowed regions.", region_allowed),
    PolicySpec("images-pinned-by-digest", "Images are pinned by digest (mandatory on production stacks).",
               images_pinned_by_digest),
    PolicySpec("no-credentials-in-env", "No credential-looking value in a machine's plain env.",
               no_credentials_in_env),
)
assert {p.name for p in POLICIES} == set(DEFAULT_LEVELS)
