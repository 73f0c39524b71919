"""The engine side of a customer app: entries run by ``enginejob`` in a job process of their own, under the lock
of the customer's stack (``controlplane.customers`` starts them).

One stack per customer, ``<slice>-cust-<customer>`` of project ``artifact-customer``, in the slice's backend,
with an inline program: ``components.customer_app.CustomerApp``. The customer's settings are the stack's
outputs (``settings``; the secrets as the secret output ``secrets``), so a call that omits an argument keeps
what the last apply set. ``ensure`` previews (dry run, with the monthly Fly cost before and after:
``fly.stack_cost``) or updates the stack; ``destroy`` destroys it, then
removes it.

The payload (through the job's stdin pipe) holds the org token and the backend's passphrase: they reach the
engine as ``FLY_API_TOKEN`` / ``PULUMI_CONFIG_PASSPHRASE`` in its environment only, never a resource input,
never an error message (``enginejob.redact.Redactor``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from enginejob import JobContext
from enginejob.redact import Redactor

REPO = Path(__file__).resolve().parent.parent
PROJECT = "artifact-customer"
FLY_TYPE = "pulumi-python:dynamic/fly:"
# The steps a caller is shown: what the engine does to Fly resources (components change nothing at Fly).
SHOWN_OPS = ("create", "update", "replace", "delete")


class CustomerJobError(Exception):
    """A failure in words for the caller (secrets scrubbed); ``kind`` says which."""


def _workspace(ctx: JobContext, payload: dict[str, Any]) -> Any:
    from pulumi import automation as auto

    root = ctx.dir
    for sub in ("work", "tmp"):
        (root / sub).mkdir(exist_ok=True)
    pulumi_dir = Path(os.environ.get("ARTIFACT_PULUMI_BIN") or "")
    path = os.pathsep.join(filter(None, [str(pulumi_dir) if pulumi_dir.name else "", str(Path(sys.executable).parent),
                                         os.environ.get("PATH", "")]))
    env = {**ctx.env, "PATH": path, "PYTHONPATH": str(REPO),
           "PULUMI_BACKEND_URL": payload["backend_url"], "PULUMI_CONFIG_PASSPHRASE": payload["passphrase"],
           "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
           "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true", "TMPDIR": str(root / "tmp"),
           "FLY_API_TOKEN": payload["token"]}
    return auto.LocalWorkspaceOptions(
        work_dir=str(root / "work"), env_vars=env, secrets_provider="passphrase",
        project_settings=auto.ProjectSettings(name=PROJECT, runtime="python",
                                              backend=auto.ProjectBackend(url=payload["backend_url"])))


def _select(payload: dict[str, Any], opts: Any, program: Any = None) -> Any | None:
    from pulumi import automation as auto

    try:
        return auto.select_stack(stack_name=payload["stack"], project_name=PROJECT, program=program or (lambda: None),
                                 opts=opts)
    except auto.errors.StackNotFoundError:
        return None


def _outputs(stack: Any) -> dict[str, Any]:
    """The stack's outputs, secrets in plain text, in one CLI call (``Stack.outputs`` makes two, the second only to
    mark which are secret: this program knows, ``secrets`` is)."""
    import json

    result = stack.workspace._run_pulumi_cmd_sync(["stack", "output", "--json", "--show-secrets", "--stack",
                                                    stack.name])
    return dict(json.loads(result.stdout or "{}"))


class _Steps:
    """The engine's events as steps (op, resource, changed keys) and progress for the caller."""

    def __init__(self, ctx: JobContext, scrub: Redactor, *, preview: bool = False) -> None:
        self.ctx, self.scrub, self.preview = ctx, scrub, preview
        self.steps: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.events: list[Any] = []  # a preview's, for its cost (fly.stack_cost)

    def __call__(self, event: Any) -> None:
        if self.preview:
            self.events.append(event)
        pre = getattr(event, "resource_pre_event", None)
        done = getattr(event, "res_outputs_event", None)
        failed = getattr(event, "res_op_failed_event", None)
        diag = getattr(event, "diagnostic_event", None)
        if pre is not None or done is not None:
            meta = (pre or done).metadata
            op = str(getattr(meta.op, "value", meta.op))
            if not meta.type.startswith(FLY_TYPE) or op in ("same", "read", "refresh"):
                return
            name = meta.urn.rsplit("::", 1)[-1]
            kind = meta.type[len(FLY_TYPE):]
            # A replace shows as one step; its create-replacement and delete-replaced halves are its parts.
            shown = "replace" if op in ("create-replacement", "delete-replaced") else op
            step = self.steps.setdefault(name, {"op": shown, "resource": name, "type": kind, "changed": []})
            if op == "replace" or shown == "replace":
                step["op"] = "replace"
            if op in ("update", "replace", "create-replacement", "delete-replaced"):
                step["changed"] = sorted(set(step["changed"]) | set(meta.diffs or []) | set(meta.keys or []))
            if self.preview and done is not None:
                return  # a preview's step is one line: what would be done
            self.ctx.emit({"kind": "step", "op": step["op"], "resource": name, "type": kind, "preview": self.preview,
                           "status": "done" if done is not None else "running"})
        elif failed is not None:
            self.ctx.emit({"kind": "step", "status": "failed"})
        elif diag is not None and diag.severity == "error" and diag.message.strip():
            message = self.scrub(" ".join(diag.message.split()))
            if message not in self.errors:
                self.errors.append(message)

    def shown(self) -> list[dict[str, Any]]:
        order = {"App": 0, "IpAddress": 1, "AppSecrets": 2, "Volume": 3, "Machine": 4}
        return sorted((s for s in self.steps.values() if s["op"] in SHOWN_OPS),
                      key=lambda s: (order.get(s["type"], 9), s["resource"]))

    def failure(self, doing: str, exc: BaseException) -> CustomerJobError:
        detail = [e for e in self.errors if "update failed" not in e and "preview failed" not in e] or self.errors
        if not detail:
            lines = [line.strip() for line in str(exc).splitlines() if "error" in line.lower()]
            detail = lines[-2:] or [type(exc).__name__]
        text = " | ".join(detail).replace("Exception calling application: ", "")
        return CustomerJobError(f"{doing} failed: {self.scrub(text)[-1500:]}")


def _locked(ctx: JobContext, payload: dict[str, Any]) -> Any:
    """The customer stack's lock at its backend (``enginejob.backend_lock``: an advisory lock on a postgres://
    backend, a flock beside a file:// one), the lock every entry point of the project takes around a write of a
    stack: server processes on one backend, on one machine or several, take turns; ``Busy`` after ``lock_wait``."""
    from enginejob.backend_lock import stack_lock

    def waiting(holder: Any) -> None:  # said at once, so the caller sees why nothing moves yet
        who = holder.sentence() if holder is not None else "another call holds the customer's stack"
        ctx.emit({"kind": "waiting", "message": f"waiting: {who}"})

    return stack_lock(payload["backend_url"], PROJECT, payload["stack"], title=payload["title"],
                      wait=payload["lock_wait"], stop=ctx.cancelled.is_set, on_wait=waiting)


def ensure(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    with _locked(ctx, payload):
        return _ensure(ctx, payload)


def destroy(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    with _locked(ctx, payload):
        return _destroy(ctx, payload)


def _ensure(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Preview (``dry_run``) or update the customer's stack to the requested settings; omitted settings keep
    what the stack's last apply set. Returns the steps (the preview's, or the ones the update made)."""
    import pulumi
    from pulumi import automation as auto

    from components.customer_app import CustomerApp, CustomerInputError, check_change, settings_from
    from fly.providers import FlyConnectionArgs
    from fly.stack_cost import cost_json, preview_comparison

    given_secrets = payload.get("secrets")
    scrub = Redactor([payload["token"], payload["passphrase"], *(given_secrets or {}).values()])
    opts = _workspace(ctx, payload)
    stack = _select(payload, opts)
    current_values: dict[str, Any] | None = None
    current_secrets: dict[str, str] = {}
    if stack is not None:
        outputs = _outputs(stack)
        if "settings" in outputs:
            current_values = dict(outputs["settings"])
            current_secrets = dict(outputs.get("secrets") or {})
    scrub = scrub.with_values(current_secrets.values())
    base = current_values or payload["defaults"]
    try:
        current = settings_from(current_values) if current_values else None
        wanted = settings_from({**base, **payload["requested"]}, registries=set(payload.get("registries") or ()))
        notes = check_change(current, wanted)
    except CustomerInputError as exc:
        raise CustomerJobError(f"invalid input: {exc}") from None
    secrets = current_secrets if given_secrets is None else dict(given_secrets)
    created_here = stack is None
    app_name = f"{payload['prefix']}-cust-{payload['customer']}"
    if created_here and payload.get("app_exists"):
        # Not made through a customer stack (an older control plane, or by hand): adopting it would add a second
        # machine and volume beside the ones it has.
        raise CustomerJobError(
            f"app {app_name} exists but has no customer stack in this backend, so its machine and volume are not "
            f"known to the control plane; nothing was changed. Fix: destroy it (`fly apps destroy {app_name}`) and "
            "call again, or check that the server uses the slice's backend (PULUMI_BACKEND_URL)")

    def program() -> None:
        connection = FlyConnectionArgs(api_base_url=payload["fly"].get("api_base_url") or None,
                                       flaps_base_url=payload["fly"].get("flaps_base_url") or None)
        app = CustomerApp("customer", prefix=payload["prefix"], customer=payload["customer"], org_slug=payload["org"],
                          settings=wanted, template=payload["template"], secrets=secrets or None,
                          connection=connection)
        pulumi.export("app", app.app.name)
        pulumi.export("machine_id", app.machine.machine_id)
        pulumi.export("volume_id", app.volume.volume_id if app.volume else "")
        pulumi.export("settings", wanted.model_dump())
        pulumi.export("secret_names", sorted(secrets))
        pulumi.export("secrets", pulumi.Output.secret(secrets))

    if stack is None:
        stack = auto.create_stack(stack_name=payload["stack"], project_name=PROJECT, program=program, opts=opts)
    else:
        stack.workspace.program = program  # the stack selected above: one CLI call less than selecting it again
    ctx.note(apps=[f"{payload['prefix']}-cust-{payload['customer']}"])
    steps = _Steps(ctx, scrub, preview=payload["dry_run"])
    result: dict[str, Any] = {"app": f"{payload['prefix']}-cust-{payload['customer']}", "stack": payload["stack"],
                              "settings": wanted.model_dump(), "secret_names": sorted(secrets), "notes": notes}
    try:
        if payload["dry_run"]:
            _, error, cancelled = ctx.engine(lambda: stack.preview(on_event=steps, color="never",
                                                                   refresh=payload.get("refresh") or None))
            if error is not None:
                raise steps.failure("the preview", error)
            shown = steps.shown()
            return {**result, "dry_run": True, "applied": False, "steps": shown, "changes": len(shown),
                    "new": created_here, "cost": cost_json(preview_comparison(steps.events))}
        value, error, cancelled = ctx.engine(lambda: stack.up(on_event=steps, color="never",
                                                              refresh=payload.get("refresh") or None),
                                               stack=stack)
        if error is not None:
            raise steps.failure("the update" + (" (interrupted)" if cancelled else ""), error)
        outputs = value.outputs
        shown = steps.shown()
        return {**result, "dry_run": False, "applied": bool(shown), "steps": shown, "changes": len(shown),
                "machine": {"id": outputs["machine_id"].value, "state": "started"},
                **({"volume": {"id": outputs["volume_id"].value, "size_gb": wanted.volume_size_gb}}
                   if outputs["volume_id"].value else {})}
    finally:
        if payload["dry_run"] and created_here:  # a dry run leaves no stack behind
            try:
                stack.workspace.remove_stack(payload["stack"])
            except auto.errors.CommandError:
                pass


def _destroy(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``pulumi destroy`` of the customer's stack (machine, then volume, secrets and address, then the app), then
    the stack's removal. A customer without a stack is a no-op."""
    scrub = Redactor([payload["token"], payload["passphrase"]])
    opts = _workspace(ctx, payload)
    app = f"{payload['prefix']}-cust-{payload['customer']}"
    stack = _select(payload, opts)
    if stack is None:
        return {"app": app, "destroyed": False, "detail": "no such customer (nothing to destroy)"}
    ctx.note(apps=[app])
    steps = _Steps(ctx, scrub)
    _, error, cancelled = ctx.engine(lambda: stack.destroy(on_event=steps, color="never"), stack=stack)
    if error is not None:
        raise steps.failure("the teardown" + (" (interrupted)" if cancelled else ""), error)
    stack.workspace.remove_stack(payload["stack"])
    return {"app": app, "destroyed": True, "steps": steps.shown()}
