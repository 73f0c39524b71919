"""``infra_provision_org``: the slice itself, through the Automation API, in two steps.

``preview`` runs ``pulumi preview`` of the stack and returns a summary of the planned changes and a
plan id: a digest of the stack name and every planned step (operation, resource, changed keys; never
values). ``apply`` takes that id, previews again, refuses when the id no longer matches (the plan
changed since: config, code or the world), and only then runs ``pulumi up``.

Pulumi runs with the operator's own environment (``PULUMI_BACKEND_URL``, ``PULUMI_CONFIG_PASSPHRASE``,
``FLY_API_TOKEN`` for the deployer's token); the automation module is imported on first use only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Iterator

from enginejob import Busy
from ops.backend_lock import LockUnavailable, backend_url_of, project_of, stack_lock

from .errors import ControlPlaneError
from .guard import scrub

# MCP clients give up on a call after about 60 s: wait less than that for another update of the stack.
STACK_LOCK_WAIT = 45.0


@contextlib.contextmanager
def _held(lock: Any) -> Iterator[None]:
    try:
        with lock:
            yield
    except Busy as exc:
        raise ControlPlaneError(f"the stack is busy: {exc}", "apply again once that update has finished") from None
    except LockUnavailable as exc:
        raise ControlPlaneError(str(exc), "fix the backend's connection settings of this server, then apply again") \
            from None


class Provisioner:
    def __init__(self, *, allowed_stacks: set[str], work_dir: Path, secrets: tuple[str, ...] = ()) -> None:
        self.allowed_stacks = allowed_stacks
        self.work_dir = work_dir
        self._secrets = secrets
        self._plans: dict[str, str] = {}
        self._lock = threading.Lock()  # one engine run at a time from this server

    def _stack(self, stack: str) -> Any:
        if stack not in self.allowed_stacks:
            raise ControlPlaneError(f"stack {stack!r} is outside this control plane's allowlist "
                                    f"({', '.join(sorted(self.allowed_stacks))})",
                                    "name the stack this control plane was started for")
        from pulumi import automation as auto

        try:
            return auto.select_stack(stack_name=stack, work_dir=str(self.work_dir))
        except auto.errors.CommandError as exc:
            raise self._engine_error(f"select stack {stack}", exc) from None

    def _engine_error(self, doing: str, exc: Exception) -> ControlPlaneError:
        lines = [line for line in str(exc).splitlines() if line.strip() and "stack trace" not in line.lower()]
        errors = [line.strip() for line in lines if "error" in line.lower()] or lines[-3:]
        text = scrub(" | ".join(errors[-4:])[-1200:], self._secrets)
        return ControlPlaneError(f"pulumi could not {doing}: {text}",
                                 "fix what the engine names (stack config, backend login, Fly token), then preview "
                                 "again")

    def _plan(self, selected: Any) -> tuple[str, dict[str, Any]]:
        from pulumi import automation as auto

        steps: list[dict[str, Any]] = []

        def on_event(event: Any) -> None:
            pre = getattr(event, "resource_pre_event", None)
            if pre is None:
                return
            meta = pre.metadata
            op = getattr(meta.op, "value", str(meta.op))
            if op in ("same", "read"):
                return
            steps.append({"op": op, "urn": meta.urn, "type": meta.type, "diffs": sorted(meta.diffs or [])})

        try:
            result = selected.preview(on_event=on_event, color="never")
        except auto.errors.CommandError as exc:
            raise self._engine_error(f"preview stack {selected.name}", exc) from None
        steps.sort(key=lambda s: (s["urn"], s["op"]))
        plan_id = hashlib.sha256(json.dumps({"stack": selected.name, "steps": steps}, sort_keys=True)
                                 .encode()).hexdigest()[:16]
        summary = {str(getattr(k, "value", k)): v for k, v in (result.change_summary or {}).items()}
        changes = [{"op": s["op"], "resource": s["urn"].rsplit("::", 1)[-1], "type": s["type"],
                    "changed": s["diffs"]} for s in steps]
        return plan_id, {"stack": selected.name, "plan_id": plan_id, "summary": summary, "changes": changes}

    def preview(self, stack: str) -> dict[str, Any]:
        with self._lock:
            plan_id, plan = self._plan(self._stack(stack))
            self._plans[plan_id] = stack
        return plan

    def _stack_lock(self, stack: str) -> Any:
        """The stack's lock across processes and machines (ops/backend_lock.py), for the plan check and the
        update together; waits up to STACK_LOCK_WAIT for another holder, then says who holds it."""
        return _held(stack_lock(backend_url_of(), project_of(self.work_dir), stack,
                                title="infra_provision_org (apply)", wait=STACK_LOCK_WAIT))

    def apply(self, stack: str, plan_id: str) -> dict[str, Any]:
        from pulumi import automation as auto

        with self._lock, contextlib.ExitStack() as held:
            if self._plans.get(plan_id) != stack:
                raise ControlPlaneError(f"plan {plan_id!r} is not a preview of stack {stack} made by this server",
                                        "call infra_provision_org with apply=false first and pass its plan_id")
            selected = self._stack(stack)
            held.enter_context(self._stack_lock(stack))  # the plan check and the update under the stack's lock
            current_id, current = self._plan(selected)
            if current_id != plan_id:
                self._plans.pop(plan_id, None)
                self._plans[current_id] = stack
                raise ControlPlaneError(
                    f"the plan of stack {stack} changed since preview {plan_id} (now {current_id}: "
                    f"{len(current['changes'])} change(s)); nothing was applied",
                    "review the new preview and apply its plan_id")
            try:
                result = selected.up(color="never")
            except auto.errors.CommandError as exc:
                raise self._engine_error(f"update stack {stack}", exc) from None
            finally:
                self._plans.pop(plan_id, None)
        return {"stack": stack, "plan_id": plan_id, "result": result.summary.result,
                "changes": {str(k): v for k, v in (result.summary.resource_changes or {}).items()}}
