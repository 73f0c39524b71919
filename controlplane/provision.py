"""``infra_provision_org``: the slice itself, through the Automation API, in two steps.

``preview`` runs ``pulumi preview`` of the stack and returns the planned steps, each with the keys it
changes, the monthly Fly cost before and after them (``fly.stack_cost``, from the same preview), and a plan id. The id is bound to values, not to a shape: it is a digest of

- every planned step: operation, resource, and its old and new inputs (as the engine reports them,
  secrets masked);
- the stack's config, every key and value (secret values included, as digests only);
- the program's code: every source file of the project (``*.py``, ``*.toml``, ``*.yaml``...; tests, the
  simulator, tools and docs aside).

``apply`` takes that id and refuses, naming what changed, when the config or the code differs from the
preview (checked first, without the engine), or when a new preview plans other steps or other values
(the state changed: someone else applied, a refresh). Only then does it run ``pulumi up``, constrained
by the plan the engine saved at preview (``preview --save-plan`` / ``up --plan``): were anything to
change between that last check and the update, the engine refuses to go beyond the plan.

The engine runs in job processes (``enginejob``): a preview, and an apply's last check and its ``up``,
each under the stack's key lock, which excludes a second server on the same backend as it excludes a
second call to this one (the second caller hears who holds it). When the server dies, whatever the signal,
the job interrupts the engine once (Pulumi records what is in flight and releases its lock) and removes
every process it started.

Pulumi runs with the operator's own environment (``PULUMI_BACKEND_URL``, ``PULUMI_CONFIG_PASSPHRASE``,
``FLY_API_TOKEN`` for the deployer's token), which the job processes inherit; the automation module is
imported in them only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from enginejob import Busy
from enginejob.backend_lock import LockUnavailable, backend_url_of, project_of, stack_lock

from .errors import ControlPlaneError
from .guard import scrub

# What is not the program: never a reason to refuse a plan.
NOT_PROGRAM = frozenset({".venv", "venv", "node_modules", "__pycache__", "tests", "bench", "flysim", "docs",
                         "artifacts", "scripts", "ops"})
PROGRAM_SUFFIXES = frozenset({".py", ".toml", ".yaml", ".yml", ".json", ".txt", ".cfg", ".ini"})
# Inputs the engine reports that are no value of the resource (the pickled provider: the code digest
# covers what it runs).
PLUMBING_INPUTS = frozenset({"__provider"})
PLAN_IDS_KEPT = 16
OUTCOMES_KEPT = 64
# How long a preview or apply waits for another one of the same stack (this server's or another's) to end:
# not at all, the caller hears at once who holds it (an engine run takes longer than a caller should wait).
LOCK_WAIT_SECONDS = 0.0
# The backend's own lock of the stack (an advisory lock on a postgres:// team backend), taken by the apply's
# job around its last check and the update: MCP clients give up on a call after about 60 s, so it waits less.
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


def backend_stack_lock(work_dir: Path, stack: str) -> Any:
    """The stack's lock at its backend (enginejob/backend_lock.py), shared with every other entry point and
    machine on that backend; waits up to STACK_LOCK_WAIT, then says who holds it."""
    return _held(stack_lock(backend_url_of(), project_of(work_dir), stack, title="infra_provision_org (apply)",
                            wait=STACK_LOCK_WAIT))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def program_digests(work_dir: Path) -> dict[str, str]:
    """Each source file of the project (links followed, as the project dirs of the tests and the cycle are
    made of links), by path relative to ``work_dir``: its content's digest. Stack config files aside (the
    config is compared by value)."""
    digests: dict[str, str] = {}
    for root, dirs, files in os.walk(work_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in NOT_PROGRAM)
        for name in sorted(files):
            path = Path(root) / name
            if path.suffix not in PROGRAM_SUFFIXES or name.startswith(".") or \
                    (name.startswith("Pulumi.") and name != "Pulumi.yaml"):
                continue
            try:
                digests[str(path.relative_to(work_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue  # a dangling link is no code
    return digests


@dataclass
class PlannedStep:
    op: str
    urn: str
    type: str
    changed: list[str]
    old: dict[str, str]  # input key -> digest of its value
    new: dict[str, str]

    @property
    def resource(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    def key(self) -> tuple[str, str]:
        return self.urn, self.op


@dataclass
class Plan:
    stack: str
    steps: list[PlannedStep]
    config: dict[str, str]  # key -> digest of its value
    config_shown: dict[str, str]  # key -> value, for keys that are not secret
    code: dict[str, str]
    saved_plan: Path | None = None
    summary: dict[str, int] = field(default_factory=dict)
    cost: dict[str, Any] | None = None  # the monthly Fly cost before/after (fly.stack_cost.cost_json); not in the id

    @property
    def id(self) -> str:
        return _digest({"stack": self.stack, "config": self.config, "code": self.code,
                        "steps": [[s.op, s.urn, s.type, s.old, s.new] for s in self.steps]})[:16]

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "steps": [vars(s) for s in self.steps], "config": self.config,
                "config_shown": self.config_shown, "code": self.code,
                "saved_plan": str(self.saved_plan) if self.saved_plan else None, "summary": self.summary,
                "cost": self.cost}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(stack=data["stack"], steps=[PlannedStep(**s) for s in data["steps"]], config=data["config"],
                   config_shown=data["config_shown"], code=data["code"],
                   saved_plan=Path(data["saved_plan"]) if data.get("saved_plan") else None,
                   summary=data.get("summary") or {}, cost=data.get("cost"))


def _inputs(state: Any) -> dict[str, Any]:
    inputs = getattr(state, "inputs", None) or {}
    return {k: v for k, v in inputs.items() if k not in PLUMBING_INPUTS}


def _changed_keys(meta: Any, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys the step changes: the engine's (from the provider's diff), else those whose inputs differ."""
    keys = list(meta.diffs or []) or sorted({str(k).split(".")[0].split("[")[0] for k in (meta.detailed_diff or {})})
    if not keys and old and new:
        keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return sorted(k for k in keys if k not in PLUMBING_INPUTS)


def _config_changes(before: Plan, now: Plan) -> list[str]:
    changes = []
    for key in sorted(set(before.config) | set(now.config)):
        if key not in now.config:
            changes.append(f"config {key} was removed")
        elif key not in before.config:
            changes.append(f"config {key} was set" + (f" to {now.config_shown[key]!r}" if key in now.config_shown
                                                      else " (secret)"))
        elif before.config[key] != now.config[key]:
            if key in before.config_shown and key in now.config_shown:
                changes.append(f"config {key} changed from {before.config_shown[key]!r} to {now.config_shown[key]!r}")
            else:
                changes.append(f"config {key} changed (secret)")
    return changes


def _code_changes(before: Plan, now: Plan) -> list[str]:
    paths = sorted(p for p in set(before.code) | set(now.code) if before.code.get(p) != now.code.get(p))
    if not paths:
        return []
    shown = ", ".join(paths[:8]) + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")
    return [f"code changed: {shown}"]


def _step_changes(before: Plan, now: Plan) -> list[str]:
    old = {s.key(): s for s in before.steps}
    new = {s.key(): s for s in now.steps}
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a is None:
            changes.append(f"{b.resource}: {b.op} was not in the preview" + (f" ({', '.join(b.changed)})" if b.changed
                                                                              else ""))
        elif b is None:
            changes.append(f"{a.resource}: the previewed {a.op} is no longer planned")
        else:
            differ = sorted(k for k in set(a.old) | set(a.new) | set(b.old) | set(b.new)
                            if a.old.get(k) != b.old.get(k) or a.new.get(k) != b.new.get(k))
            if differ:
                changes.append(f"{a.resource}: {a.op} with other values of {', '.join(differ)}")
    return changes


def _engine_error(doing: str, exc: Exception, secrets: tuple[str, ...], stack: str = "") -> ControlPlaneError:
    from enginejob.pulumi_lock import locked_message

    locked = locked_message(str(exc), stack) if stack else None
    if locked is not None:  # who holds Pulumi's lock, whether it still runs, and how to release it
        return ControlPlaneError(f"pulumi could not {doing}: {scrub(locked[0], secrets)}", locked[1])
    lines = [line for line in str(exc).splitlines() if line.strip() and "stack trace" not in line.lower()]
    errors = [line.strip() for line in lines if "error" in line.lower()] or lines[-3:]
    text = scrub(" | ".join(errors[-4:])[-1200:], secrets)
    return ControlPlaneError(f"pulumi could not {doing}: {text}",
                             "fix what the engine names (stack config, backend login, Fly token), then preview "
                             "again")


# -- in the job process --------------------------------------------------------------------------------------

def _select(ctx: Any, payload: dict[str, Any]) -> Any:
    from pulumi import automation as auto

    work_dir = payload["work_dir"]
    try:
        return auto.select_stack(stack_name=payload["stack"], work_dir=work_dir,
                                 opts=auto.LocalWorkspaceOptions(work_dir=work_dir, env_vars=dict(ctx.env)))
    except auto.errors.CommandError as exc:
        raise _engine_error(f"select stack {payload['stack']}", exc, ()) from None


def _now(selected: Any, work_dir: Path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The config (digests, and the values of keys that are not secret) and the code, as they are now."""
    from pulumi import automation as auto

    try:
        config = selected.get_all_config()
    except auto.errors.CommandError as exc:
        raise _engine_error(f"read the config of stack {selected.name}", exc, ()) from None
    digests = {k: _digest([v.value, v.secret]) for k, v in config.items()}
    shown = {k: v.value for k, v in config.items() if not v.secret}
    return digests, shown, program_digests(work_dir)


def _preview(ctx: Any, selected: Any, work_dir: Path, saved: Path | None, *, cost: bool = False) -> Plan:
    """The stack's preview as a Plan; ``cost``: with the monthly Fly cost before and after, from the same
    preview's steps."""
    from pulumi import automation as auto

    from fly.stack_cost import cost_json, preview_comparison

    config, shown, code = _now(selected, work_dir)
    steps: list[PlannedStep] = []
    events: list[Any] = []

    def on_event(event: Any) -> None:
        if cost:
            events.append(event)
        pre = getattr(event, "resource_pre_event", None)
        if pre is None:
            return
        meta = pre.metadata
        op = getattr(meta.op, "value", str(meta.op))
        if op in ("same", "read"):
            return
        old, new = _inputs(meta.old), _inputs(meta.new)
        steps.append(PlannedStep(op=op, urn=meta.urn, type=meta.type, changed=_changed_keys(meta, old, new),
                                 old={k: _digest(v) for k, v in old.items()},
                                 new={k: _digest(v) for k, v in new.items()}))

    result, error, cancelled = ctx.engine(lambda: selected.preview(
        on_event=on_event, color="never", **({"plan": str(saved)} if saved else {})))
    if cancelled:
        raise ControlPlaneError("the preview was interrupted (the server is stopping)", "call again")
    if isinstance(error, auto.errors.CommandError):
        raise _engine_error(f"preview stack {selected.name}", error, ())
    if error is not None:
        raise error
    steps.sort(key=lambda s: (s.urn, s.op))
    summary = {str(getattr(k, "value", k)): v for k, v in (result.change_summary or {}).items()}
    return Plan(stack=selected.name, steps=steps, config=config, config_shown=shown, code=code,
                saved_plan=saved, summary=summary, cost=cost_json(preview_comparison(events)) if cost else None)


def _answer(run: Any) -> dict[str, Any]:
    """A job's outcome as data: a ControlPlaneError keeps its what and fix across the process boundary."""
    try:
        return {"ok": run()}
    except ControlPlaneError as exc:
        return {"error": {"what": exc.what, "fix": exc.fix}}


def preview_job(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Job entry: a preview of the stack, saving the engine's plan to ``payload["plan_file"]``."""
    def run() -> dict[str, Any]:
        selected = _select(ctx, payload)
        return _preview(ctx, selected, Path(payload["work_dir"]), Path(payload["plan_file"]), cost=True).to_json()
    return _answer(run)


def apply_job(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Job entry: the last check of a previewed plan against config, code and a new preview, then ``up``
    within the engine's saved plan, all under the stack's lock."""
    from pulumi import automation as auto

    def run() -> dict[str, Any]:
        planned = Plan.from_json(payload["plan"])
        work_dir = Path(payload["work_dir"])
        with backend_stack_lock(work_dir, planned.stack):
            return checked_up(planned, work_dir)

    def checked_up(planned: Plan, work_dir: Path) -> dict[str, Any]:
        selected = _select(ctx, payload)
        # Config and code first: they need no engine run, and a change there is a change of the plan.
        config, shown, code = _now(selected, work_dir)
        now = Plan(stack=planned.stack, steps=planned.steps, config=config, config_shown=shown, code=code)
        changes = _config_changes(planned, now) + _code_changes(planned, now)
        if not changes:
            now = _preview(ctx, selected, work_dir, None)
            changes = _config_changes(planned, now) + _code_changes(planned, now) + _step_changes(planned, now)
            if not changes and now.id != planned.id:
                changes = ["the planned steps differ"]  # not expected: every part of the id is compared above
        if changes:
            return {"refused": changes}
        kwargs = {"plan": str(planned.saved_plan)} if planned.saved_plan else {}
        result, error, cancelled = ctx.engine(lambda: selected.up(color="never", **kwargs), stack=selected)
        if isinstance(error, auto.errors.CommandError):
            raise _engine_error(f"update stack {planned.stack}" + (" (interrupted: the server is stopping)"
                                                                   if cancelled else ""), error, (), planned.stack)
        if error is not None:
            raise error
        return {"result": result.summary.result,
                "changes": {str(k): v for k, v in (result.summary.resource_changes or {}).items()}}
    return _answer(run)


# -- in the server ---------------------------------------------------------------------------------------------

class Provisioner:
    """Previews and applies of the allowed stacks, each in a job process under the stack's lock.
    ``runner``: the server's ``enginejob.Runner`` (one made on first use when not given)."""

    def __init__(self, *, allowed_stacks: set[str], work_dir: Path, secrets: tuple[str, ...] = (),
                 runner: Any = None) -> None:
        self.allowed_stacks = allowed_stacks
        self.work_dir = work_dir
        self._secrets = secrets
        self._runner = runner
        self._plans: dict[str, Plan] = {}
        self._outcomes: dict[str, Outcome] = {}
        self._lock = threading.Lock()

    def _stack_lock(self, stack: str) -> Any:
        return backend_stack_lock(self.work_dir, stack)

    def _check_stack(self, stack: str) -> None:
        if stack not in self.allowed_stacks:
            raise ControlPlaneError(f"stack {stack!r} is outside this control plane's allowlist "
                                    f"({', '.join(sorted(self.allowed_stacks))})",
                                    "name the stack this control plane was started for")

    def _the_runner(self) -> Any:
        import enginejob

        if self._runner is None:
            self._runner = enginejob.Runner()
        return self._runner

    def _run(self, entry: str, stack: str, doing: str, payload: dict[str, Any]) -> Any:
        """One job under the stack's lock; its answer, or the ControlPlaneError it raised."""
        import enginejob

        key = f"controlplane/provision/{os.environ.get('PULUMI_BACKEND_URL', 'default')}/{stack}"
        try:
            job = self._the_runner().start(f"controlplane.provision:{entry}", {**payload, "stack": stack,
                                                                          "work_dir": str(self.work_dir)},
                                     kind=f"controlplane-{entry}", title=f"a {doing} of stack {stack} by the control "
                                     "plane", key=key, wait=LOCK_WAIT_SECONDS)
            answer = job.wait()
        except enginejob.Busy as exc:
            raise ControlPlaneError(f"cannot {doing} stack {stack} now: {exc}",
                                    "call again once it has finished") from None
        except (enginejob.JobFailed, enginejob.JobDied) as exc:
            raise ControlPlaneError(f"the {doing} of stack {stack} failed: {scrub(str(exc), self._secrets)}",
                                    "read the message, fix what it names and preview again") from None
        if "error" in answer:
            raise ControlPlaneError(scrub(answer["error"]["what"], self._secrets),
                                    scrub(answer["error"]["fix"], self._secrets))
        return answer["ok"]

    def preview(self, stack: str) -> dict[str, Any]:
        self._check_stack(stack)
        with self._lock:
            # Private to this process (0700), gone when it exits or, killed outright, at the next sweep.
            plan_file = self._the_runner().private_dir() / f"{stack}-{uuid.uuid4().hex}.json"
        plan = Plan.from_json(self._run("preview_job", stack, "preview", {"plan_file": str(plan_file)}))
        with self._lock:
            self._keep(plan)
            # The same values previewed again give the same id: a new preview makes it one to try again.
            if plan.id in self._outcomes and self._outcomes[plan.id].done:
                del self._outcomes[plan.id]
        return {"stack": plan.stack, "plan_id": plan.id, "summary": plan.summary,
                "changes": [{"op": s.op, "resource": s.resource, "type": s.type, "changed": s.changed}
                            for s in plan.steps], "cost": plan.cost}

    def _keep(self, plan: Plan) -> None:
        previous = self._plans.pop(plan.id, None)
        if previous is not None and previous.saved_plan and previous.saved_plan != plan.saved_plan:
            previous.saved_plan.unlink(missing_ok=True)
        self._plans[plan.id] = plan
        while len(self._plans) > PLAN_IDS_KEPT:
            self._forget(next(iter(self._plans)))

    def _forget(self, plan_id: str) -> None:
        plan = self._plans.pop(plan_id, None)
        if plan is not None and plan.saved_plan is not None:
            plan.saved_plan.unlink(missing_ok=True)

    def apply(self, stack: str, plan_id: str) -> dict[str, Any]:
        """Apply a previewed plan once. The same call again (a client that timed out and retries) joins it:
        while it runs it says so, then it answers with the first call's outcome; it never applies twice."""
        self._check_stack(stack)
        with self._lock:
            outcome = self._outcomes.get(plan_id)
            if outcome is not None and outcome.stack == stack:
                return outcome.answer(plan_id)
            planned = self._plans.pop(plan_id, None)  # an id is used once: taken here, whatever happens next
            if planned is None or planned.stack != stack:
                raise ControlPlaneError(f"plan {plan_id!r} is not a preview of stack {stack} made by this server",
                                        "call infra_provision_org with apply=false first and pass its plan_id")
            outcome = self._outcomes[plan_id] = Outcome(stack)
            while len(self._outcomes) > OUTCOMES_KEPT:
                self._outcomes.pop(next(iter(self._outcomes)))
        try:
            answer = self._run("apply_job", stack, "update", {"plan": planned.to_json()})
            if "refused" in answer:
                raise ControlPlaneError(
                    f"the plan of stack {stack} changed since preview {plan_id}: {'; '.join(answer['refused'])}; "
                    "nothing was applied", "review a new preview (apply=false) and apply its plan_id")
            outcome.result = {"stack": stack, "plan_id": plan_id, **answer}
        except ControlPlaneError as exc:
            outcome.error = exc
            raise
        except BaseException:
            outcome.error = ControlPlaneError(f"the update of stack {stack} by plan {plan_id} ended without an "
                                              "outcome", "preview again to see where the stack stands")
            raise
        finally:
            if planned.saved_plan is not None:
                planned.saved_plan.unlink(missing_ok=True)
        return outcome.result


@dataclass
class Outcome:
    """What became of an applied plan id, for a caller that asks again."""

    stack: str
    since: str = field(default_factory=lambda: time.strftime("%H:%M:%S UTC", time.gmtime()))
    result: dict[str, Any] | None = None
    error: ControlPlaneError | None = None

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def answer(self, plan_id: str) -> dict[str, Any]:
        if self.result is not None:
            return {**self.result, "repeated": True}
        if self.error is not None:
            raise ControlPlaneError(f"{self.error.what} (the outcome of an earlier call with plan {plan_id}: a plan "
                                    "id is tried once)", self.error.fix)
        raise ControlPlaneError(f"plan {plan_id} is being applied by an earlier call (since {self.since})",
                                "wait, then call again with the same plan_id for its outcome")
