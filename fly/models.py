"""Typed shapes of the Fly Machines API answers and requests (see Fly's OpenAPI spec).

Answers are validated on the way in: the client trusts nothing it has not parsed. Models allow extra
fields because Fly adds fields over time; what this project relies on is declared and typed.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Organization(_Answer):
    id: str | None = None
    slug: str
    name: str | None = None
    internal_numeric_id: int | None = None


class App(_Answer):
    id: str | None = None
    name: str
    network: str | None = None
    status: str | None = None
    organization: Organization | None = None
    machine_count: int | None = None
    volume_count: int | None = None


class Volume(_Answer):
    id: str
    name: str
    state: str | None = None
    size_gb: int
    region: str
    zone: str | None = None
    encrypted: bool | None = None
    attached_machine_id: str | None = None
    attached_alloc_id: str | None = None
    created_at: str | None = None
    fstype: str | None = None


class MachineEvent(_Answer):
    id: str | None = None
    type: str
    status: str | None = None
    source: str | None = None
    timestamp: int | None = None
    request: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int | None:
        """An exit event's exit code, as fly-go's MachineRequest.GetExitCode reads it: the monitor's
        ``exit_event`` first, then ``request.exit_event``; None on events that carry none."""
        request = self.request or {}
        detail = (request.get("MonitorEvent") or {}).get("exit_event") or request.get("exit_event")
        return None if detail is None else int(detail.get("exit_code", 0))  # Go omits a zero exit_code


def release_exit_code(events: Iterable[MachineEvent]) -> int | None:
    """A one-shot machine's exit code from its events, or None if it has not exited since it last
    started. Mirrors fly-go GetLatestEventOfTypeAfterType ("exit" after "start"); events are ordered
    by timestamp (the API lists them newest first)."""
    ordered = list(events)
    if all(e.timestamp is not None for e in ordered):
        ordered.sort(key=lambda e: e.timestamp or 0, reverse=True)
    start = next((i for i, e in enumerate(ordered) if e.type == "start"), 0)
    exit_event = next((e for e in ordered[:start] if e.type == "exit"), None)
    return None if exit_event is None else exit_event.exit_code


class CheckStatus(_Answer):
    name: str
    status: str
    output: str | None = None
    updated_at: str | None = None


class ImageRef(_Answer):
    registry: str | None = None
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None
    labels: dict[str, str] | None = None


class Machine(_Answer):
    id: str
    name: str | None = None
    state: str
    region: str | None = None
    instance_id: str | None = None
    version: str | None = None
    private_ip: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    image_ref: ImageRef | None = None
    created_at: str | None = None
    updated_at: str | None = None
    events: list[MachineEvent] = Field(default_factory=list)
    checks: list[CheckStatus] | None = None
    nonce: str | None = None

    @property
    def current_version(self) -> str | None:
        return self.instance_id or self.version


class Lease(_Answer):
    nonce: str
    expires_at: int | None = None
    owner: str | None = None
    description: str | None = None
    version: str | None = None


class ExecResult(_Answer):
    exit_code: int = 0
    exit_signal: int | None = None
    stdout: str = ""
    stderr: str = ""


class WaitResult(_Answer):
    ok: bool = True
    state: str | None = None
    version: str | None = None
    event_id: str | None = None


class SecretsUpdate(_Answer):
    version: int | None = None
    Version: int | None = None  # noqa: N815 - Fly answers both spellings (see the spec's AppSecretsUpdateResp)

    @property
    def secrets_version(self) -> int:
        return int(self.version if self.version is not None else (self.Version or 0))


class IPAssignment(_Answer):
    ip: str
    region: str | None = None
    service_name: str | None = None
    shared: bool | None = None
    created_at: str | None = None


class Certificate(_Answer):
    hostname: str
    status: str | None = None
    configured: bool | None = None
    acme_requested: bool | None = None


class DeployToken(_Answer):
    token: str


IPType = Literal["private_v6", "shared_v4", "v6", "v4"]
MachineState = Literal["started", "stopped", "suspended", "destroyed", "failed", "settled"]


class LogEntry(_Answer):
    """One line of an app's logs, as fly-go's ``LogEntry`` (``types.go``) decodes the ``attributes`` of the
    logs API's ``data`` items. ``provider`` is ``meta.event.provider`` (``app`` for what the machine's
    processes print, ``runner`` and ``proxy`` for the platform's lines)."""

    timestamp: str
    message: str
    level: str = ""
    instance: str = ""
    region: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def provider(self) -> str:
        event = self.meta.get("event") if isinstance(self.meta, dict) else None
        return str(event.get("provider") or "") if isinstance(event, dict) else ""

    def line(self) -> str:
        """The line as ``fly logs`` prints it: ``<time> <provider>[<instance>] <region> [<level>] <message>``
        (flyctl ``internal/render/logs.go``)."""
        who = f"{self.provider}[{self.instance}]" if self.provider and self.instance else (
            self.provider or self.instance)
        return f"{self.timestamp} {who} {self.region} [{self.level}] {self.message}"
