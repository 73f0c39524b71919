"""What the user sees while a job runs: one ``Step`` per thing happening, from the Automation API's
engine events (deploy, rollback) or from the teardown's own calls. Every text passes the job's
``Redactor`` first, so no credential reaches a page, stream or log even if an error quoted one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal

from enginejob.redact import Redactor as _Redactor

Status = Literal["info", "running", "done", "failed", "warning"]

# Resource names of SelfHostedPair (the component's children) in words.
LABELS = {
    "relay-app": "relay app", "relay-shared-v4": "relay public IPv4 (shared)", "relay-v6": "relay public IPv6",
    "relay-private-v6": "relay Flycast address", "relay-secrets": "relay secrets", "relay-machine": "relay machine",
    "vm-app": "agent VM app", "vm-private-v6": "agent VM Flycast address", "vm-volume": "agent VM volume",
    "vm-secrets": "agent VM secrets", "vm-machine": "agent VM machine",
    "health": "health checks (machine checks, relay /health)", "pair": "relay and agent VM",
}
VERBS = {"create": "creating", "update": "updating", "delete": "removing", "replace": "replacing",
         "create-replacement": "creating replacement", "delete-replaced": "removing replaced", "read": "reading",
         "refresh": "refreshing", "same": "unchanged"}


@dataclass(frozen=True)
class Step:
    text: str
    status: Status = "info"
    key: str = ""  # the resource a step is about; the page updates one line per key
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%H:%M:%S"))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[Step], None]


class Redactor(_Redactor):
    """Replaces every credential value (and nothing shorter than 6 characters) with ``[secret]``."""

    def __init__(self, values: Iterable[str]) -> None:
        super().__init__(values, mark="[secret]", min_length=6)


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


def label(urn: str) -> str | None:
    """The words for a resource of the pair; None for the stack and providers (not shown)."""
    type_ = urn.split("::")[2] if urn.count("::") >= 3 else ""
    if type_.startswith("pulumi:pulumi:Stack") or type_.startswith("pulumi:providers:"):
        return None
    name = resource_name(urn)
    return LABELS.get(name, name)


def engine_step(event: Any) -> Step | None:
    """One engine event (pulumi.automation.events.EngineEvent) as a Step, or None when not shown."""
    if event.resource_pre_event is not None:
        meta = event.resource_pre_event.metadata
        what = label(meta.urn)
        op = str(getattr(meta.op, "value", meta.op))
        if what is None or op == "same":
            return None
        if resource_name(meta.urn) == "health" and op in ("create", "update"):
            return Step("verifying health: machine checks (read back from Fly) and the relay's public /health",
                        "running", key=meta.urn)
        return Step(f"{VERBS.get(op, op)} {what}", "running", key=meta.urn)
    if event.res_outputs_event is not None:
        meta = event.res_outputs_event.metadata
        what = label(meta.urn)
        op = str(getattr(meta.op, "value", meta.op))
        if what is None or op == "same":
            return None
        if resource_name(meta.urn) == "health" and op in ("create", "update"):
            return Step("health: machine checks passing, relay /health ok", "done", key=meta.urn)
        done = {"create": "created", "update": "updated", "delete": "removed", "replace": "replaced",
                "read": "read", "refresh": "refreshed"}.get(op, f"{op} done")
        return Step(f"{what}: {done}", "done", key=meta.urn)
    if event.res_op_failed_event is not None:
        meta = event.res_op_failed_event.metadata
        what = label(meta.urn) or "deploy"
        return Step(f"{what}: failed", "failed", key=meta.urn)
    if event.diagnostic_event is not None:
        diag = event.diagnostic_event
        if diag.severity not in ("error", "warning") or (diag.ephemeral or False):
            return None
        text = clean_diagnostic(diag.message)
        if not text:
            return None
        # Its own line: the resource's "failed" step must not replace the reason.
        return Step(text, "failed" if diag.severity == "error" else "warning",
                    key=f"{diag.urn}#diagnostic" if diag.urn else "")
    return None


def clean_diagnostic(message: str) -> str:
    """The provider's own words, without the gRPC wrapper Python dynamic providers add."""
    text = " ".join(message.split())
    for noise in ("Exception calling application: ",):
        text = text.replace(noise, "")
    if text.startswith("update failed") or text.startswith("preview failed"):
        return ""  # the engine's summary of the error already shown for the resource
    return text
