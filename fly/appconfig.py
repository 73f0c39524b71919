"""fly.toml -> Fly Machines API machine config, the way flyctl builds it.

Machines created from here must look flyctl-deployed (``fly status``, ``fly deploy`` and the Fly
dashboard key off the same metadata, env and service shapes), so this module mirrors flyctl's
``internal/appconfig`` (config.go, patches.go, processgroups.go, service.go, toplevelcheck.go,
machines.go) and ``internal/command/deploy/machines_releasecommand.go``, plus fly-go's
``machine_types.go`` for presets and wire formats. Where flyctl and the OpenAPI schema disagree
(``autostop``), flyctl wins and the spot is commented.
"""

from __future__ import annotations

import base64
import re
import shlex
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, StrictBool, ValidationError, model_validator

from .errors import FlyError

__all__ = [
    "FlyToml", "FlyTomlError", "auto_stop_mode", "load_fly_toml", "machine_config", "parse_fly_toml",
    "release_command_config", "release_exit_code",
]

DEFAULT_GROUP = "app"  # fly.MachineProcessGroupApp
RELEASE_GROUP = "fly_app_release_command"  # fly.MachineProcessGroupFlyAppReleaseCommand
SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM")  # fly.StopConfig enum
DOCS = "https://fly.io/docs/reference/configuration/"

# fly-go MachinePresets: shared CPUs come with 256 MB each, performance CPUs with 2 GB each.
PRESETS: dict[str, dict[str, Any]] = {
    **{f"shared-cpu-{n}x": {"cpu_kind": "shared", "cpus": n, "memory_mb": 256 * n} for n in (1, 2, 4, 6, 8)},
    **{f"performance-{n}x": {"cpu_kind": "performance", "cpus": n, "memory_mb": 2048 * n}
       for n in (1, 2, 4, 6, 8, 10, 12, 14, 16)},
    **{name: {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768, "gpu_kind": kind, "gpus": 1}
       for name, kind in (("a100-40gb", "a100-pcie-40gb"), ("a100-80gb", "a100-sxm4-80gb"), ("l40s", "l40s"),
                          ("a10", "a10"))},
}


class FlyTomlError(FlyError, ValueError):
    """A fly.toml that cannot become a machine config. The message names the file (and line when
    known), the key path, what is wrong with the value and how to fix it; later issues follow."""

    def __init__(self, source: str, key: str | None, problem: str, fix: str, *, line: int | None = None,
                 more: Iterable[tuple[str | None, str, str]] = ()) -> None:
        self.source, self.key, self.problem, self.fix, self.line = source, key, problem, fix, line
        self.issues = [(key, problem, fix), *more]
        where = f"{source}:{line}" if line else source
        lines = [f"{where}: {self._one(key, problem, fix)}"]
        lines += [f"  also {self._one(*issue)}" for issue in self.issues[1:]]
        super().__init__("\n".join(lines))

    @staticmethod
    def _one(key: str | None, problem: str, fix: str) -> str:
        return f"{key + ': ' if key else ''}{problem.rstrip('.')}. Fix: {fix}"


class _Bad(ValueError):
    """Raised inside validators; carries the fix (and a key path below the failing location)."""

    def __init__(self, problem: str, fix: str, key: tuple[str | int, ...] = ()) -> None:
        self.problem, self.fix, self.key = problem, fix, key
        super().__init__(problem)


# ---- value parsers (flyctl's patches.go casts, fly-go's Duration/Autostop, docker/go-units sizes) ----

_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kmgtp])?i?b?$", re.IGNORECASE)


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String(): what fly-go puts on the wire for durations ("1m30s", "500ms")."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(v: int, prec: int) -> str:
        whole, rest = divmod(v, 10**prec)
        return f"{whole}.{str(rest).rjust(prec, '0').rstrip('0')}" if rest else str(whole)

    if u < 10**3:
        return f"{sign}{u}ns"
    if u < 10**6:
        return f"{sign}{frac(u, 3)}µs"
    if u < 10**9:
        return f"{sign}{frac(u, 6)}ms"
    hours, rest = divmod(u, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = f"{frac(rest, 9)}s"
    if hours or minutes:
        out = f"{minutes}m{out}"
    return sign + (f"{hours}h{out}" if hours else out)


def _duration(value: Any, bare_unit_ns: int) -> str | None:
    # patches.go _castDuration: bare numbers are seconds for kill_timeout, milliseconds for checks.
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _go_duration(int(value) * bare_unit_ns)
    fix = 'write a duration such as "10s", "1m30s" or "500ms"'
    if not isinstance(value, str):
        raise _Bad(f"{value!r} is not a duration", fix)
    text, pos, total = value.strip(), 0, Decimal(0)
    body = text.lstrip("+-")
    if body == "0":
        return "0s"
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if not m:
            raise _Bad(f"{value!r} is not a duration", fix)
        total += Decimal(m.group(1)) * _NS[m.group(2)]
        pos = m.end()
    if not body:
        raise _Bad("the duration is empty", fix)
    return _go_duration(int(total) * (-1 if text.startswith("-") else 1))


def _int(value: Any, *, what: str = "a whole number", example: str = "10", lo: int | None = None,
         hi: int | None = None) -> int | None:
    # patches.go castToInt: flyctl accepts numeric strings ("80") for ports, so do we.
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if number is None:
        raise _Bad(f"{value!r} is not {what}", f"write {what} without quotes, e.g. {example}")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f"of at least {lo}"
        raise _Bad(f"{number} is out of range", f"use {what} {bounds}")
    return number


def _port(value: Any) -> int | None:
    return _int(value, what="a port number", example="8080", lo=1, hi=65535)


def _autostop(value: Any) -> str | None:
    # fly-go MachineAutostop.UnmarshalJSON/UnmarshalText: booleans are the old format, true = "stop".
    if value is None or isinstance(value, bool):
        return None if value is None else ("stop" if value else "off")
    text = value.strip().lower() if isinstance(value, str) else None
    modes = {"off": "off", "false": "off", "stop": "stop", "true": "stop", "suspend": "suspend"}
    if text not in modes:
        raise _Bad(f"{value!r} is not an auto-stop mode", 'use "off", "stop" or "suspend" (or true / false)')
    return modes[text]


def _human_size(value: Any, *, binary: bool, unit: int, what: str, example: str) -> int | None:
    # helpers/units.go ParseSize: a bare integer is already in the target unit; otherwise
    # docker/go-units (RAMInBytes is binary, FromHumanSize is decimal) then divide.
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    m = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise _Bad(f"{value!r} is not {what}", f"write it like {example}")
    base = 1024 if binary else 1000
    power = " kmgtp".index((m.group(2) or " ").lower())
    try:
        return int(Decimal(m.group(1)) * base**power) // unit
    except InvalidOperation:
        raise _Bad(f"{value!r} is not {what}", f"write it like {example}") from None


def _memory_mb(value: Any) -> int | None:
    mb = _human_size(value, binary=True, unit=1024**2, what="a memory size", example='"1gb", "512mb" or 1024 (MB)')
    if mb == 0:
        raise _Bad("memory cannot be zero", 'use at least 256 MB, e.g. "256mb"')
    return mb


def _size_gb(value: Any) -> int | None:
    return _human_size(value, binary=False, unit=1000**3, what="a size", example='"10gb" or 10 (GB)')


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value  # patches.go stringOrSliceToSlice


def _table_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value  # patches.go ensureArrayOfMap: [x] or [[x]]


def _env(value: Any) -> Any:
    # patches.go _patchEnv: [env] values are stringified like Go's %v; a list of tables is merged.
    if isinstance(value, list):
        merged: dict[str, Any] = {}
        for item in value:
            merged.update(_env(item))
        return merged
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        if isinstance(v, (dict, list)):
            raise _Bad("environment values must be plain values", f'write {key} = "value"', (key,))
        out[key] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _processes(value: Any) -> Any:
    if isinstance(value, list):  # patches.go patchProcesses: the old [{name, command}] form
        return {str(p.get("name")): str(p.get("command", "")) for p in value if isinstance(p, dict) and "name" in p}
    return value


def _concurrency(value: Any) -> Any:
    if isinstance(value, str):  # patches.go _patchService: the old "soft,hard" string
        soft, _, hard = value.partition(",")
        if not (soft.strip().isdigit() and hard.strip().isdigit()):
            raise _Bad(f"{value!r} is not a concurrency limit",
                       'write a table: concurrency = { type = "requests", soft_limit = 20, hard_limit = 25 }')
        return {"type": "requests", "soft_limit": int(soft), "hard_limit": int(hard)}
    return value


def _headers(value: Any) -> Any:
    if isinstance(value, list):  # patches.go _patchCheckHeaders: [{name, value}] form
        return {str(h.get("name")): str(h.get("value", "")) for h in value if isinstance(h, dict)}
    return {k: str(v) for k, v in value.items()} if isinstance(value, dict) else value


Int = Annotated[int, BeforeValidator(_int)]
Port = Annotated[int, BeforeValidator(_port)]
Seconds = Annotated[str, BeforeValidator(lambda v: _duration(v, 10**9))]
Millis = Annotated[str, BeforeValidator(lambda v: _duration(v, 10**6))]
Autostop = Annotated[Literal["off", "stop", "suspend"], BeforeValidator(_autostop)]
StrList = Annotated[list[str], BeforeValidator(_str_list)]
Headers = Annotated[dict[str, str], BeforeValidator(_headers)]


# ---- fly.toml sections (config.go, service.go, toplevelcheck.go); unknown keys are kept ----

class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class Concurrency(_Section):
    type: str | None = None
    hard_limit: Int | None = None
    soft_limit: Int | None = None


class TcpCheck(_Section):
    interval: Millis | None = None
    timeout: Millis | None = None
    grace_period: Millis | None = None


class HttpCheck(TcpCheck):
    method: str | None = None
    path: str | None = None
    protocol: str | None = None
    tls_skip_verify: StrictBool | None = None
    tls_server_name: str | None = None
    headers: Headers | None = None


class TopLevelCheck(HttpCheck):
    type: str | None = None
    port: Port | None = None
    processes: StrList = []

    @model_validator(mode="after")
    def _type(self) -> TopLevelCheck:
        if self.type not in ("http", "tcp"):  # toplevelcheck.go toMachineCheck
            raise _Bad(f"check type {self.type!r} is missing or invalid", 'set type = "http" or type = "tcp"',
                       ("type",))
        return self


class PortSpec(_Section):
    port: Port | None = None
    start_port: Port | None = None
    end_port: Port | None = None
    handlers: StrList = []
    force_https: StrictBool = False
    tls_options: dict[str, Any] | None = None
    http_options: dict[str, Any] | None = None
    proxy_proto_options: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _some_port(self) -> PortSpec:
        if self.port is None and self.start_port is None:
            raise _Bad("has neither port nor start_port", "add port = 443 (or start_port/end_port for a range)")
        return self


class _ServiceBase(_Section):
    internal_port: Port
    auto_stop_machines: Autostop | None = None
    auto_start_machines: StrictBool | None = None
    min_machines_running: Annotated[int, BeforeValidator(lambda v: _int(v, lo=0))] | None = None
    concurrency: Annotated[Concurrency, BeforeValidator(_concurrency)] | None = None
    processes: StrList = []


class HttpService(_ServiceBase):
    force_https: StrictBool = False
    tls_options: dict[str, Any] | None = None
    http_options: dict[str, Any] | None = None
    checks: Annotated[list[HttpCheck], BeforeValidator(_table_list)] = []


class Service(_ServiceBase):
    protocol: Literal["tcp", "udp"] = "tcp"
    ports: Annotated[list[PortSpec], BeforeValidator(_table_list)] = []
    tcp_checks: Annotated[list[TcpCheck], BeforeValidator(_table_list)] = []
    http_checks: Annotated[list[HttpCheck], BeforeValidator(_table_list)] = []


class Mount(_Section):
    source: str
    destination: str
    initial_size: Annotated[int, BeforeValidator(_size_gb)] | None = None  # GB, for volume creation
    snapshot_retention: Int | None = None
    auto_extend_size_threshold: Int | None = None
    auto_extend_size_increment: Annotated[int, BeforeValidator(_size_gb)] | None = None  # GB
    auto_extend_size_limit: Annotated[int, BeforeValidator(_size_gb)] | None = None  # GB
    processes: StrList = []

    @model_validator(mode="after")
    def _absolute(self) -> Mount:
        if not self.destination.startswith("/"):
            raise _Bad(f"{self.destination!r} is not an absolute path", 'use a path such as "/data"', ("destination",))
        return self


class Compute(_Section):
    size: str | None = None
    memory: Annotated[int, BeforeValidator(_memory_mb)] | None = None  # MB
    cpu_kind: Literal["shared", "performance"] | None = None
    cpus: Int | None = None
    memory_mb: Int | None = None
    max_memory_mb: Int | None = None
    gpu_kind: str | None = None
    gpus: Int | None = None
    kernel_args: list[str] | None = None
    host_dedication_id: str | None = None
    persist_rootfs: Literal["never", "always", "restart"] | None = None
    processes: StrList = []

    @model_validator(mode="after")
    def _preset(self) -> Compute:
        if self.size is not None and self.size not in PRESETS:  # fly-go MachineGuest.SetSize
            raise _Bad(f"{self.size!r} is not a Fly machine size", f"use one of {', '.join(PRESETS)}", ("size",))
        return self


class Restart(_Section):
    policy: Literal["always", "never", "on-failure"] = "on-failure"
    retries: Int | None = None
    processes: StrList = []


class Metrics(_Section):
    port: Port | None = None
    path: str | None = None
    https: StrictBool | None = None
    processes: StrList = []


class Static(_Section):
    guest_path: str
    url_prefix: str
    tigris_bucket: str | None = None
    index_document: str | None = None


class File(_Section):
    guest_path: str
    local_path: str | None = None
    secret_name: str | None = None
    raw_value: str | None = None
    processes: StrList = []

    @model_validator(mode="after")
    def _one_source(self) -> File:
        if sum(x is not None for x in (self.local_path, self.secret_name, self.raw_value)) != 1:
            raise _Bad("needs exactly one of local_path, secret_name, raw_value", "keep one of the three")
        return self


class Deploy(_Section):
    strategy: str | None = None
    release_command: str | None = None
    release_command_timeout: Seconds | None = None
    release_command_vm: Compute | None = None
    wait_timeout: Seconds | None = None


class Experimental(_Section):
    cmd: StrList | None = None
    entrypoint: StrList | None = None
    exec: StrList | None = None


class Build(_Section):
    image: str | None = None
    dockerfile: str | None = None


class FlyToml(_Section):
    """A parsed, validated fly.toml. Shapes are normalised as flyctl's patches.go does (tables or
    arrays of tables, bare-number durations, numeric-string ports, "soft,hard" concurrency)."""

    app: str | None = None
    primary_region: str | None = None
    kill_signal: str | None = None
    kill_timeout: Seconds | None = None
    swap_size_mb: Int | None = None
    host_dedication_id: str | None = None
    build: Build | None = None
    deploy: Deploy | None = None
    experimental: Experimental | None = None
    env: Annotated[dict[str, str], BeforeValidator(_env)] = {}
    processes: Annotated[dict[str, str], BeforeValidator(_processes)] = {}
    mounts: Annotated[list[Mount], BeforeValidator(_table_list)] = []
    http_service: HttpService | None = None
    services: Annotated[list[Service], BeforeValidator(_table_list)] = []
    checks: dict[str, TopLevelCheck] = {}
    vm: Annotated[list[Compute], BeforeValidator(_table_list)] = []
    restart: Annotated[list[Restart], BeforeValidator(_table_list)] = []
    metrics: Annotated[list[Metrics], BeforeValidator(_table_list)] = []
    statics: Annotated[list[Static], BeforeValidator(_table_list)] = []
    files: Annotated[list[File], BeforeValidator(_table_list)] = []

    _source: str = PrivateAttr("fly.toml")
    _base_dir: Path | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, raw: Any) -> Any:
        # patches.go: [[compute]]/[[computes]] are [[vm]], [mount] is [[mounts]], [metric] is [[metrics]],
        # and [[checks]] with a name is the keyed [checks.name] form.
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        for canonical, aliases in (("vm", ("compute", "computes")), ("mounts", ("mount",)), ("metrics", ("metric",))):
            for alias in aliases:
                if alias in raw:
                    raw[canonical] = [*_table_list(raw.get(canonical, [])), *_table_list(raw.pop(alias))]
        if isinstance(raw.get("checks"), list):
            raw["checks"] = {c.get("name", f"check{i}"): c for i, c in enumerate(raw["checks"]) if isinstance(c, dict)}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> FlyToml:
        if self.kill_signal is not None and self.kill_signal not in SIGNALS:
            raise _Bad(f"{self.kill_signal!r} is not a stop signal", f"use one of {', '.join(SIGNALS)}",
                       ("kill_signal",))
        groups = self.process_groups()
        sections: list[tuple[tuple[str | int, ...], list[str]]] = [
            (("http_service",), self.http_service.processes if self.http_service else []),
            *((("checks", name), c.processes) for name, c in self.checks.items()),
            *(((field, i), item.processes) for field in ("services", "mounts", "vm", "restart", "metrics", "files")
              for i, item in enumerate(getattr(self, field))),
        ]
        for key, names in sections:
            for name in names:
                if name not in groups:  # flyctl validation: "non-existent process group"
                    raise _Bad(f"names process group {name!r}, which [processes] does not define",
                               f"add {name} to [processes] or use one of {groups}", (*key, "processes"))
        for name, command in self.processes.items():
            _split(command, ("processes", name))
        if self.deploy and self.deploy.release_command:
            _split(self.deploy.release_command, ("deploy", "release_command"))
        return self

    def process_groups(self) -> list[str]:
        """processgroups.go ProcessNames: sorted [processes] keys, or ["app"]."""
        return sorted(self.processes) or [DEFAULT_GROUP]

    def default_process_group(self) -> str:
        """processgroups.go DefaultProcessName: "app" if defined, else the first group."""
        groups = self.process_groups()
        return DEFAULT_GROUP if DEFAULT_GROUP in groups else groups[0]

    def _matches(self, group: str, processes: list[str]) -> bool:
        # processgroups.go flattenGroupsMatch: a section without `processes` serves only the default group.
        return group in processes if processes else group == self.default_process_group()

    def _fail(self, key: str | None, problem: str, fix: str) -> FlyTomlError:
        return FlyTomlError(self._source, key, problem, fix)


def _split(command: str, key: tuple[str | int, ...]) -> list[str]:
    try:  # flyctl uses google/shlex, a POSIX-style split
        return shlex.split(command)
    except ValueError as exc:
        raise _Bad(f"cannot split the command {command!r} ({exc})", "balance its quotes", key) from None


# ---- parsing ----

def _key_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: dict[str, Any]) -> tuple[str, str]:
    kind, value, name = err["type"], err.get("input"), str(next(
        (p for p in reversed(err["loc"]) if isinstance(p, str)), "value"))
    if kind == "missing":
        section = _key_path(err["loc"][:-1])
        return "is required", f"add {name} = ... to {f'[{section}]' if section else 'the top level'}"
    if kind.startswith("bool"):
        return f"{value!r} is not true or false", f"write {name} = true or {name} = false, without quotes"
    if kind.startswith("string"):
        return f"{value!r} is not a string", f'quote it: {name} = "..."'
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{value!r} is not a table", f"write it as a [{name}] table"
    if kind == "list_type":
        return f"{value!r} is not an array", f'write an array: {name} = ["..."]'
    if kind == "literal_error":
        return f"{value!r} is not allowed", f"use one of {err['ctx']['expected']}"
    return err["msg"], f"see {DOCS}"


def _as_fly_toml_error(exc: ValidationError, source: str) -> FlyTomlError:
    issues = []
    for err in exc.errors():
        bad = (err.get("ctx") or {}).get("error")
        loc = (*err["loc"], *bad.key) if isinstance(bad, _Bad) else err["loc"]
        problem, fix = (bad.problem, bad.fix) if isinstance(bad, _Bad) else _describe(err)
        issues.append((_key_path(loc) or None, problem, fix))
    return FlyTomlError(source, *issues[0], more=issues[1:])


def parse_fly_toml(text: str, *, source: str = "fly.toml") -> FlyToml:
    """Parse and validate fly.toml text; every problem is a FlyTomlError naming ``source``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        reason = re.sub(r"\s*\(at line.*\)$", "", str(exc)) or str(exc)
        raise FlyTomlError(source, None, f"invalid TOML: {reason}",
                           'fix the syntax on that line (quote strings, use [table] and [[array]] headers)',
                           line=int(m.group(1)) if m else None) from None
    try:
        config = FlyToml.model_validate(raw)
    except ValidationError as exc:
        raise _as_fly_toml_error(exc, source) from None
    config._source = source
    return config


def load_fly_toml(path: str | Path) -> FlyToml:
    """Read and validate a fly.toml; [[files]] local_path is resolved against its directory."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlyTomlError(str(path), None, f"cannot read the file ({exc.strerror or exc})",
                           "check the path to fly.toml") from None
    config = parse_fly_toml(text, source=str(path))
    config._base_dir = path.parent
    return config


# ---- machine config (machines.go updateMachineConfig / ToReleaseMachineConfig) ----

def _compact(d: dict[str, Any]) -> dict[str, Any]:
    """Go's `omitempty`: drop None, False, 0, "" and empty collections."""
    return {k: v for k, v in d.items() if v not in (None, False, 0, "", [], {})}


def _guest(toml: FlyToml, compute: Compute | None) -> dict[str, Any]:
    """machines.go toMachineGuest/computeToGuest: the size preset, then `memory`, then explicit
    guest fields. flyctl leaves guest unset without [[vm]] (Fly then applies shared-cpu-1x); we
    send that default explicitly so the desired state is complete."""
    if compute is None:
        guest = dict(PRESETS["shared-cpu-1x"])
    else:
        guest = dict(PRESETS[compute.size or ("performance-8x" if compute.gpu_kind else "shared-cpu-1x")])
        if compute.memory:
            guest["memory_mb"] = compute.memory
        guest.update(_compact(compute.model_dump(include={"cpu_kind", "cpus", "memory_mb", "max_memory_mb", "gpu_kind",
                                                          "gpus", "kernel_args", "host_dedication_id",
                                                          "persist_rootfs"})))
    host = (compute.host_dedication_id if compute else None) or toml.host_dedication_id
    return {**guest, "host_dedication_id": host} if host else guest


def _compute_for(toml: FlyToml, group: str) -> Compute | None:
    # processgroups.go ComputeForGroup: [[vm]] without processes fit every group; the last one that
    # names the group explicitly wins over them.
    fits = [c for c in toml.vm if not c.processes or toml._matches(group, c.processes)]
    best = fits[0] if fits else None
    for c in fits[1:]:
        best = c if group in c.processes else best
    return best


def _check(check: TcpCheck, kind: str) -> dict[str, Any]:
    out = {"type": kind, **_compact(check.model_dump(include={"interval", "timeout", "grace_period"}))}
    if isinstance(check, HttpCheck):
        out |= _compact(check.model_dump(include={"method", "path", "protocol", "tls_server_name"}))
        if check.tls_skip_verify is not None:
            out["tls_skip_verify"] = check.tls_skip_verify
        if check.headers:
            out["headers"] = [{"name": k, "values": [v]} for k, v in sorted(check.headers.items())]
    return out


def _service(svc: HttpService | Service) -> dict[str, Any]:
    if isinstance(svc, HttpService):  # service.go HTTPService.ToService
        ports = [_compact({"port": 80, "handlers": ["http"], "force_https": svc.force_https,
                           "http_options": svc.http_options}),
                 _compact({"port": 443, "handlers": ["http", "tls"], "http_options": svc.http_options,
                           "tls_options": svc.tls_options})]
        checks = [_check(c, "http") for c in svc.checks]
        protocol = "tcp"
    else:
        ports = [_compact(p.model_dump(include=set(PortSpec.model_fields))) for p in svc.ports]
        checks = [_check(c, "tcp") for c in svc.tcp_checks] + [_check(c, "http") for c in svc.http_checks]
        protocol = svc.protocol
    out: dict[str, Any] = {"protocol": protocol, "internal_port": svc.internal_port}
    if svc.auto_stop_machines is not None:
        # flyctl sends fly-go's MachineAutostop.MarshalJSON: off/stop as the old booleans, only
        # "suspend" as a string. The OpenAPI schema lists strings only, but its own description
        # (and the API) accept both; we match flyctl byte for byte.
        out["autostop"] = {"off": False, "stop": True}.get(svc.auto_stop_machines, svc.auto_stop_machines)
    if svc.auto_start_machines is not None:
        out["autostart"] = svc.auto_start_machines
    if svc.min_machines_running is not None:
        out["min_machines_running"] = svc.min_machines_running
    out |= _compact({"ports": ports, "checks": checks,
                     "concurrency": _compact(svc.concurrency.model_dump(include={"type", "hard_limit", "soft_limit"}))
                     if svc.concurrency else None})
    return out


def _services_for(toml: FlyToml, group: str) -> list[HttpService | Service]:
    http = [toml.http_service] if toml.http_service and toml._matches(group, toml.http_service.processes) else []
    return [*http, *(s for s in toml.services if toml._matches(group, s.processes))]


def _files(toml: FlyToml, files: Iterable[tuple[int, File]]) -> list[dict[str, Any]]:
    out = []
    for i, f in files:  # config.go File.toMachineFile: contents travel base64-encoded
        entry: dict[str, Any] = {"guest_path": f.guest_path}
        if f.secret_name is not None:
            entry["secret_name"] = f.secret_name
        elif f.raw_value is not None:
            entry["raw_value"] = base64.b64encode(f.raw_value.encode()).decode()
        else:
            path = (toml._base_dir or Path.cwd()) / str(f.local_path)
            try:
                entry["raw_value"] = base64.b64encode(path.read_bytes()).decode()
            except OSError as exc:
                raise toml._fail(f"files[{i}].local_path", f"cannot read {path} ({exc.strerror or exc})",
                                 "make local_path point to an existing file, relative to fly.toml") from None
        out.append(entry)
    return out


def _stop_config(toml: FlyToml) -> dict[str, Any] | None:
    return _compact({"signal": toml.kill_signal, "timeout": toml.kill_timeout}) or None


def _metadata(toml: FlyToml, given: dict[str, str] | None, group: str) -> dict[str, str]:
    # fly_platform_version=v2 and fly_process_group are what `fly status`/`fly deploy` use to
    # recognise a Machines-platform app's machines; fly_release_* come only from the caller.
    out = dict(given or {})
    for key, value in (("fly_platform_version", "v2"), ("fly_process_group", group)):
        if out.get(key, value) != value:
            raise toml._fail(None, f"metadata {key}={out[key]!r} contradicts the {value!r} this config sets",
                             f"drop {key} from the metadata argument")
        out[key] = value
    bad = [k for k, v in out.items() if not isinstance(v, str)]
    if bad:
        raise toml._fail(None, f"metadata values must be strings (not for {bad})", "pass str values")
    return out


def machine_config(toml: FlyToml, *, image: str, process_group: str | None = None,
                   mounts: dict[str, str] | None = None, env: dict[str, str] | None = None,
                   metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """The Machines API ``config`` for one process group, as flyctl's ToMachineConfig builds it.

    ``mounts`` maps a volume name ([[mounts]] source) to the id of the volume to attach; ``env``
    overrides fly.toml's [env]; ``metadata`` adds keys (e.g. fly_release_id, fly_release_version).
    """
    group = process_group or toml.default_process_group()
    if group not in toml.process_groups():
        raise toml._fail("processes", f"process group {group!r} is not defined",
                         f"use one of {toml.process_groups()} or add it to [processes]")
    config: dict[str, Any] = {"image": image}

    # Init: [processes] command for the group, else [experimental] cmd; flyctl always sends `init`.
    cmd = _split(toml.processes[group], ("processes", group)) if toml.processes.get(group) else None
    exp = toml.experimental
    init = {"cmd": cmd or (exp.cmd if exp else None), "entrypoint": exp.entrypoint if exp else None,
            "exec": exp.exec if exp else None, "swap_size_mb": toml.swap_size_mb}
    config["init"] = _compact(init)
    config["guest"] = _guest(toml, _compute_for(toml, group))

    # Env: fly.toml [env], then what flyctl always sets, then the caller's overrides.
    config["env"] = {**toml.env, "FLY_PROCESS_GROUP": group,
                     **({"PRIMARY_REGION": toml.primary_region} if toml.primary_region else {}), **(env or {})}
    config["metadata"] = _metadata(toml, metadata, group)

    services = [_service(s) for s in _services_for(toml, group)]
    if services:
        config["services"] = services

    checks = {}
    http = toml.http_service if toml.http_service and toml._matches(group, toml.http_service.processes) else None
    for name, check in toml.checks.items():
        if not toml._matches(group, check.processes):
            continue
        port = check.port if check.port is not None else (http.internal_port if http else None)
        if port is None:  # machines.go: a port-less check borrows the group's http_service port
            raise toml._fail(f"checks.{name}.port", f"check has no port and group {group!r} has no http_service",
                             "set port = <the port your app listens on>")
        out = _check(check, str(check.type)) | {"port": port}
        if check.method:
            out["method"] = check.method.upper()  # toplevelcheck.go upper-cases top-level methods
        checks[name] = out
    if checks:
        config["checks"] = checks

    group_mounts = [(i, m) for i, m in enumerate(toml.mounts) if toml._matches(group, m.processes)]
    if len(group_mounts) > 1:
        raise toml._fail(f"mounts[{group_mounts[1][0]}]", f"group {group!r} has more than one mount",
                         "a Fly Machine attaches one volume: keep one [[mounts]] per process group")
    for i, m in group_mounts:
        volume_id = (mounts or {}).get(m.source)
        if not volume_id:
            raise toml._fail(f"mounts[{i}].source", f"volume {m.source!r} has no volume id to attach",
                             f"create the volume and pass mounts={{{m.source!r}: '<volume id>'}}")
        config["mounts"] = [{"volume": volume_id, "path": m.destination, "name": m.source,
                             **_compact({"extend_threshold_percent": m.auto_extend_size_threshold,
                                         "add_size_gb": m.auto_extend_size_increment,
                                         "size_gb_limit": m.auto_extend_size_limit})}]

    metrics = next((m for m in toml.metrics if toml._matches(group, m.processes)), None)
    if metrics and _compact(metrics.model_dump(include={"port", "path", "https"})):
        config["metrics"] = _compact(metrics.model_dump(include={"port", "path", "https"}))
    if toml.statics:
        config["statics"] = [_compact(s.model_dump(include={"guest_path", "url_prefix", "tigris_bucket",
                                                            "index_document"})) for s in toml.statics]
    files = _files(toml, ((i, f) for i, f in enumerate(toml.files) if toml._matches(group, f.processes)))
    if files:
        config["files"] = files
    if stop := _stop_config(toml):
        config["stop_config"] = stop
    restarts = [r for r in toml.restart if toml._matches(group, r.processes)]
    if restarts:  # machines.go: the last matching [[restart]] wins; fly.toml's "never" is the API's "no"
        r = restarts[-1]
        config["restart"] = _compact({"policy": "no" if r.policy == "never" else r.policy, "max_retries": r.retries})
    return config


def release_command_config(toml: FlyToml, *, image: str, env: dict[str, str] | None = None,
                           metadata: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The release_command machine config (machines.go ToReleaseMachineConfig plus deploy's
    launchInputForReleaseCommand), or None when [deploy] has no release_command.

    A one-shot machine: restart "no", auto_destroy, hidden from DNS, no services/checks/mounts;
    read its result with :func:`release_exit_code`.
    """
    if not (toml.deploy and toml.deploy.release_command):
        return None
    exp = toml.experimental
    config: dict[str, Any] = {
        "image": image,
        "init": _compact({"cmd": _split(toml.deploy.release_command, ("deploy", "release_command")),
                          "entrypoint": exp.entrypoint if exp else None, "swap_size_mb": toml.swap_size_mb}),
        "restart": {"policy": "no"},
        "auto_destroy": True,
        "dns": {"skip_registration": True},
        "metadata": _metadata(toml, metadata, RELEASE_GROUP),
        "env": {**toml.env, "RELEASE_COMMAND": "1", "FLY_PROCESS_GROUP": RELEASE_GROUP,
                **({"PRIMARY_REGION": toml.primary_region} if toml.primary_region else {}), **(env or {})},
        # release_command_vm if given; otherwise flyctl reuses the biggest guest among the default
        # group's machines, i.e. what machine_config gives that group (shared-cpu-1x by default).
        "guest": _guest(toml, toml.deploy.release_command_vm
                        or _compute_for(toml, toml.default_process_group())),
    }
    if stop := _stop_config(toml):
        config["stop_config"] = stop
    files = _files(toml, enumerate(toml.files))  # flyctl merges every [[files]] entry here
    if files:
        config["files"] = files
    return config


def auto_stop_mode(toml: FlyToml, process_group: str | None = None) -> str:
    """How Fly's proxy idles the group's machines: "off", "stop" or "suspend" (unset means "off")."""
    group = process_group or toml.default_process_group()
    if group not in toml.process_groups():
        raise toml._fail("processes", f"process group {group!r} is not defined", f"use one of {toml.process_groups()}")
    modes = {s.auto_stop_machines or "off" for s in _services_for(toml, group)}
    if len(modes) > 1:
        raise toml._fail("auto_stop_machines", f"the services of group {group!r} disagree: {sorted(modes)}",
                         "set the same auto_stop_machines on http_service and every [[services]] of the group")
    return modes.pop() if modes else "off"


def release_exit_code(events: Iterable[Any]) -> int | None:
    """The release machine's exit code from its events (newest first, as the API lists them), or
    None if it has not exited since it last started. Mirrors fly-go GetLatestEventOfTypeAfterType
    ("exit" after "start") and MachineRequest.GetExitCode (the monitor's exit_event first)."""
    def field(event: Any, name: str) -> Any:
        return event.get(name) if isinstance(event, dict) else getattr(event, name, None)

    ordered = list(events)
    if all(field(e, "timestamp") is not None for e in ordered):
        ordered.sort(key=lambda e: field(e, "timestamp"), reverse=True)
    start = next((i for i, e in enumerate(ordered) if field(e, "type") == "start"), 0)
    exit_event = next((e for e in ordered[:start] if field(e, "type") == "exit"), None)
    if exit_event is None:
        return None
    request = field(exit_event, "request") or {}
    detail = (request.get("MonitorEvent") or {}).get("exit_event") or request.get("exit_event")
    return None if detail is None else int(detail.get("exit_code", 0))  # Go omits a zero exit_code
