"""The fly.toml schema (flyctl config.go, service.go, toplevelcheck.go, processgroups.go): one
pydantic model per section, shapes normalised as patches.go does; unknown keys are kept."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, StrictBool, model_validator

from ..regions import region_problem
from .errors import BadValue, FlyTomlError, line_of
from .values import (
    Autostop, Env, Headers, Int, MemoryMb, Millis, NonNegativeInt, Port, ProcessMap, Seconds, SizeGb, StrList, Tables,
    concurrency_table, split_command, table_list,
)

DEFAULT_GROUP = "app"  # fly.MachineProcessGroupApp
RELEASE_GROUP = "fly_app_release_command"  # fly.MachineProcessGroupFlyAppReleaseCommand
SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM")  # fly.StopConfig enum

# fly-go MachinePresets: shared CPUs come with 256 MB each, performance CPUs with 2 GB each.
PRESETS: dict[str, dict[str, Any]] = {
    **{f"shared-cpu-{n}x": {"cpu_kind": "shared", "cpus": n, "memory_mb": 256 * n} for n in (1, 2, 4, 6, 8)},
    **{f"performance-{n}x": {"cpu_kind": "performance", "cpus": n, "memory_mb": 2048 * n}
       for n in (1, 2, 4, 6, 8, 10, 12, 14, 16)},
    **{name: {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768, "gpu_kind": kind, "gpus": 1}
       for name, kind in (("a100-40gb", "a100-pcie-40gb"), ("a100-80gb", "a100-sxm4-80gb"), ("l40s", "l40s"),
                          ("a10", "a10"))},
}


class _Section(BaseModel):
    """Unknown keys are kept (flyctl only warns about them), but one that is a near miss of a known
    key is a typo whose setting would silently not apply: refused, naming the key it resembles."""

    model_config = ConfigDict(extra="allow")
    _also_known: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _typos(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            known = [*cls.model_fields, *cls._also_known]
            for key in raw:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8) if key not in known else []
                if close:
                    raise BadValue(f"{key!r} is not a fly.toml setting here (did you mean {close[0]!r}?)",
                                   f"rename it to {close[0]}", (str(key),))
        return raw


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
            raise BadValue(f"check type {self.type!r} is missing or invalid", 'set type = "http" or type = "tcp"',
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
            raise BadValue("has neither port nor start_port", "add port = 443 (or start_port/end_port for a range)")
        return self


class _ServiceBase(_Section):
    internal_port: Port
    auto_stop_machines: Autostop | None = None
    auto_start_machines: StrictBool | None = None
    min_machines_running: NonNegativeInt | None = None
    concurrency: Annotated[Concurrency, BeforeValidator(concurrency_table)] | None = None
    processes: StrList = []


class HttpService(_ServiceBase):
    force_https: StrictBool = False
    tls_options: dict[str, Any] | None = None
    http_options: dict[str, Any] | None = None
    checks: Tables[HttpCheck] = []


class Service(_ServiceBase):
    protocol: Literal["tcp", "udp"] = "tcp"
    ports: Tables[PortSpec] = []
    tcp_checks: Tables[TcpCheck] = []
    http_checks: Tables[HttpCheck] = []


class Mount(_Section):
    source: str
    destination: str
    initial_size: SizeGb | None = None  # GB, for volume creation
    snapshot_retention: Int | None = None
    auto_extend_size_threshold: Int | None = None
    auto_extend_size_increment: SizeGb | None = None  # GB
    auto_extend_size_limit: SizeGb | None = None  # GB
    processes: StrList = []

    @model_validator(mode="after")
    def _absolute(self) -> Mount:
        if not self.destination.startswith("/"):
            raise BadValue(f"{self.destination!r} is not an absolute path", 'use a path such as "/data"',
                           ("destination",))
        return self


class Compute(_Section):
    size: str | None = None
    memory: MemoryMb | None = None  # MB
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
            raise BadValue(f"{self.size!r} is not a Fly machine size", f"use one of {', '.join(PRESETS)}", ("size",))
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
            raise BadValue("needs exactly one of local_path, secret_name, raw_value", "keep one of the three")
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
    env: Env = {}
    processes: ProcessMap = {}
    mounts: Tables[Mount] = []
    http_service: HttpService | None = None
    services: Tables[Service] = []
    checks: dict[str, TopLevelCheck] = {}
    vm: Tables[Compute] = []
    restart: Tables[Restart] = []
    metrics: Tables[Metrics] = []
    statics: Tables[Static] = []
    files: Tables[File] = []

    # flyctl's other top-level keys and the aliases _aliases folds in (patches.go).
    _also_known = ("compute", "computes", "mount", "metric", "console_command", "machine_checks")

    _source: str = PrivateAttr("fly.toml")
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
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
                    raw[canonical] = [*table_list(raw.get(canonical, [])), *table_list(raw.pop(alias))]
        if isinstance(raw.get("checks"), list):
            raw["checks"] = {c.get("name", f"check{i}"): c for i, c in enumerate(raw["checks"]) if isinstance(c, dict)}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> FlyToml:
        if self.primary_region is not None and (problem := region_problem(self.primary_region)):
            raise BadValue(f"{self.primary_region!r} {problem}",
                           'set primary_region to a Fly region code such as "syd"', ("primary_region",))
        if self.kill_signal is not None and self.kill_signal not in SIGNALS:
            raise BadValue(f"{self.kill_signal!r} is not a stop signal", f"use one of {', '.join(SIGNALS)}",
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
                    raise BadValue(f"names process group {name!r}, which [processes] does not define",
                               f"add {name} to [processes] or use one of {groups}", (*key, "processes"))
        for name, command in self.processes.items():
            split_command(command, ("processes", name))
        if self.deploy and self.deploy.release_command:
            split_command(self.deploy.release_command, ("deploy", "release_command"))
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

    def error(self, key: str | None, problem: str, fix: str) -> FlyTomlError:
        return FlyTomlError(self._source, key, problem, fix, line=line_of(self._lines, key))
