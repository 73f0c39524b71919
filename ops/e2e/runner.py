"""`python -m ops e2e`: run the validation guide's scenarios against an org slice, inject their faults,
check their expectations, and keep the evidence in ``artifacts/e2e/<timestamp>/``.

    python -m ops e2e --smoke --strategy ephemeral [--fly flysim|fly]       # a fresh slice, torn down after
    python -m ops e2e --all --strategy staging --stack org1                 # a long-lived slice, workers reset
    python -m ops e2e --scenario FAULT-050 --variant unhappy --strategy fixture-pool --manifest out.json

Strategies (the guide's three environments): ``ephemeral`` brings up ``org1-e2e-<run id>`` as `python -m
ops cycle` does (up, phase 6), runs the scenarios on it, and always tears it down; ``staging`` uses a slice
that exists (``--stack`` or ``--manifest``) and destroys its worker pool's machines before each scenario;
``fixture-pool`` uses one that exists too, leaves machines it did not make alone, and sweeps the worker
machines e2e runs made (this one's and orphans of earlier ones) after each scenario.

Tokens: the slice's org token (``controlPlaneToken`` of ``--stack``, else ``FLY_ORG_TOKEN``) is what the
control plane and phase 6 use; the deployer's ``FLY_API_TOKEN`` injects the faults and mints the extra
tokens the revocation drill revokes. Neither is ever written to the evidence.

Exit status: 0 when every expectation that can be observed on the target held (those about Artifact's own
services are "not observable here" on flysim, never passed); 1 when one failed or a step could not run; 2
for bad usage or a scenario file that is not valid.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import secrets
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .redact import Redactor
from .scenario import (
    VARIANTS,
    LogExpect,
    MachinesExpect,
    McpExpect,
    NfsExpect,
    Scenario,
    ScenarioError,
    SecretExpect,
    ServiceExpect,
    ValidationExpect,
    load_all,
    SCENARIOS_DIR,
)

REPO = Path(__file__).resolve().parents[2]
SMOKE = ("ROUTER-001", "EXEC-010")
SNAPSHOT_ROLES = ("nfs", "router", "exec", "worker_pool")
RUN_LABEL = "artifact_e2e_run"  # metadata key of the worker machines an e2e run makes
WAIT_SECONDS = 120
LOG_EXCERPT_LINES = 100
NOT_OBSERVABLE = "not observable here: no Artifact service runs on flysim (run against a real slice)"


def log(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


class StepFailed(Exception):
    """A step could not do what it says (not an outcome a scenario expects, such as a tool's error)."""


@dataclass
class StepRecord:
    name: str
    do: str
    started: float
    ok: bool = True
    error: str | None = None
    result: Any = None


@dataclass
class Slice:
    """What the run knows of the slice: its manifest (public outputs) and its org token (never written)."""

    manifest: dict[str, Any]
    org_token: str
    stack: str | None
    work_dir: Path | None
    engine_env: dict[str, str] = field(default_factory=dict)  # the backend and passphrase of --stack's engine

    @property
    def prefix(self) -> str:
        return str(self.manifest.get("slice") or self.manifest.get("prefix") or "")

    def app(self, role: str) -> str:
        apps = self.manifest.get("apps") or {}
        if role not in apps:
            raise StepFailed(f"the slice has no {role} app (its roles: {', '.join(sorted(apps))})")
        return str(apps[role]["name"])


# -- the run ----------------------------------------------------------------------------------------

@dataclass
class Run:
    slice: Slice
    fly: Any  # FlyClient with the deployer's token
    flysim: bool
    evidence: Path
    run_id: str
    strategy: str
    redactor: Redactor
    mcp_env: dict[str, str]
    sessions: dict[str, Any] = field(default_factory=dict)
    minted: dict[str, str] | None = None  # {"id", "token"} of the last minted token

    # -- templating ---------------------------------------------------------------------------------

    def render(self, value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"\{([a-z_]+(?:\.[a-z_]+)?)\}", lambda m: self._lookup(m.group(1)), value)
        if isinstance(value, list):
            return [self.render(v) for v in value]
        if isinstance(value, dict):
            return {k: self.render(v) for k, v in value.items()}
        return value

    def _lookup(self, key: str) -> str:
        if key.startswith("apps."):
            return self.slice.app(key[5:])
        values = {"stack": self.slice.stack or self.slice.prefix, "prefix": self.slice.prefix,
                  "org": str((self.slice.manifest.get("org") or {}).get("slug", "")),
                  "domain": str(((self.slice.manifest.get("apps") or {}).get("router") or {}).get("hostname") or ""),
                  "run_id": self.run_id}
        if key not in values:
            raise StepFailed(f"unknown placeholder {{{key}}}: use apps.<role>, stack, prefix, org, domain, run_id")
        return values[key]

    # -- evidence -----------------------------------------------------------------------------------

    def write(self, path: Path, content: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else json.dumps(content, indent=2, sort_keys=True) + "\n"
        path.write_text(self.redactor.text(text))

    def snapshot(self) -> dict[str, Any]:
        """Every machine of the slice's serving apps and worker pool: id, name, state, region, image."""
        out: dict[str, Any] = {}
        for role in SNAPSHOT_ROLES:
            if role not in (self.slice.manifest.get("apps") or {}):
                continue
            name = self.slice.app(role)
            out[role] = [{"id": m.id, "name": m.name, "state": m.state, "region": m.region,
                          "image": m.config.get("image"), "e2e_run": (m.config.get("metadata") or {}).get(RUN_LABEL)}
                         for m in self.fly.list_machines(name)]
        return out

    # -- the MCP servers -----------------------------------------------------------------------------

    def session(self, label: str) -> Any:
        from .mcp import McpSession

        token = self.slice.org_token if label == "slice" else (self.minted or {}).get("token")
        if not token:
            raise StepFailed("no minted token: a `token` step with action mint must come first")
        key = label if label == "slice" else f"minted-{(self.minted or {}).get('id')}"
        if key not in self.sessions:
            manifest_file = self.evidence / "mcp" / "manifest.json"
            if not manifest_file.exists():
                self.write(manifest_file, self.slice.manifest)
            self.sessions[key] = McpSession(
                label=key, manifest_file=manifest_file, token=token, transcript=self.evidence / "mcp" / f"{key}.transcript.jsonl",
                redactor=self.redactor, work_dir=self.slice.work_dir, env=self.mcp_env,
                server_log=self.evidence / "mcp" / f"{key}.server.log").__enter__()
        return self.sessions[key]

    def close_sessions(self, *, keep_slice: bool = True) -> None:
        for key in list(self.sessions):
            if keep_slice and key == "slice":
                continue
            self.sessions.pop(key).__exit__(None, None, None)

    # -- the worker machines of e2e runs -------------------------------------------------------------

    def workers(self, *, any_run: bool = False) -> list[Any]:
        if "worker_pool" not in (self.slice.manifest.get("apps") or {}):
            return []
        machines = self.fly.list_machines(self.slice.app("worker_pool"))
        return [m for m in machines if m.state != "destroyed" and (
            (m.config.get("metadata") or {}).get(RUN_LABEL) == self.run_id
            or (any_run and (m.config.get("metadata") or {}).get(RUN_LABEL)))]

    def destroy_machines(self, app: str, machines: list[Any]) -> list[str]:
        from fly import FlyNotFound

        for m in machines:
            self.fly.delete_machine(app, m.id, force=True)
        for m in machines:
            try:
                self.fly.wait_machine(app, m.id, "destroyed", timeout=WAIT_SECONDS)
            except FlyNotFound:
                pass
        return [m.id for m in machines]

    def reset_workers(self) -> None:
        """Before a scenario: staging resets the pool (every worker machine goes); fixture-pool and
        ephemeral sweep what e2e runs made."""
        if "worker_pool" not in (self.slice.manifest.get("apps") or {}):
            return
        pool = self.slice.app("worker_pool")
        doomed = [m for m in self.fly.list_machines(pool) if m.state != "destroyed"] \
            if self.strategy == "staging" else self.workers(any_run=True)
        if doomed:
            log(f"{'reset' if self.strategy == 'staging' else 'swept'} worker machines of {pool}: "
                f"{', '.join(self.destroy_machines(pool, doomed))}")


# -- steps ----------------------------------------------------------------------------------------------

_TARGET_STATE = {"stop": "stopped", "start": "started", "restart": "started", "suspend": "suspended"}


def _machine(run: Run, step: Any) -> Any:
    app = run.slice.app(step.app)
    machines = run.workers() if step.app == "worker_pool" else \
        [m for m in run.fly.list_machines(app) if m.state != "destroyed"]
    if not machines:
        raise StepFailed(f"app {app} has no machine to {step.action}")
    action = {"stop": run.fly.stop_machine, "start": run.fly.start_machine, "restart": run.fly.restart_machine,
              "suspend": run.fly.suspend_machine}[step.action]
    for m in machines:
        action(app, m.id)
    for m in machines:
        run.fly.wait_machine(app, m.id, _TARGET_STATE[step.action], timeout=WAIT_SECONDS)
    return {"app": app, "machines": [m.id for m in machines], "state": _TARGET_STATE[step.action]}


def _worker(run: Run, step: Any) -> Any:
    pool = run.slice.app("worker_pool")
    if step.action == "destroy":
        return {"destroyed": run.destroy_machines(pool, run.workers())}
    entry = run.slice.manifest["apps"]["worker_pool"]
    template = entry.get("machine_template")
    if not isinstance(template, dict) or not template.get("image"):
        raise StepFailed(f"the manifest has no machine_template for {pool}: bring the slice up with this project")
    config = copy.deepcopy(template)
    config.setdefault("metadata", {})[RUN_LABEL] = run.run_id
    machine = run.fly.create_machine(pool, config, region=entry.get("region") or None,
                                     skip_launch=step.stop_at_once)
    if step.stop_at_once:  # killed while it boots: started, and stopped without waiting for it to run
        run.fly.start_machine(pool, machine.id)
        run.fly.stop_machine(pool, machine.id)
        run.fly.wait_machine(pool, machine.id, "stopped", timeout=WAIT_SECONDS)
    else:
        run.fly.wait_machine(pool, machine.id, "started", timeout=WAIT_SECONDS, instance_id=machine.instance_id)
    return {"app": pool, "machine": machine.id, "autostop": [s.get("autostop") for s in config.get("services") or []]}


def _secrets(run: Run, step: Any) -> Any:
    app = run.slice.app(step.app)
    values: dict[str, str | None] = {name: None for name in step.unset}
    for name, variable in step.set_from_env.items():
        value = os.environ.get(variable)
        if not value:
            raise StepFailed(f"cannot set {name} of {app}: ${variable} is not set (it holds the value to restore; "
                             "else run `pulumi up --refresh` on the slice, which sets it again)")
        run.redactor.add(value)
        values[name] = value
    if values:
        run.fly.set_secrets(app, values)
    return {"app": app, "digests": run.fly.list_secret_names(app)}


def _nfs_machine(run: Run) -> tuple[str, str, str]:
    app = run.slice.app("nfs")
    machines = [m for m in run.fly.list_machines(app) if m.state != "destroyed"]
    if not machines:
        raise StepFailed(f"the NFS app {app} has no machine")
    mounts = machines[0].config.get("mounts") or [{}]
    return app, machines[0].id, str(mounts[0].get("path") or "/data")


def _nfs(run: Run, step: Any, records: dict[str, StepRecord]) -> Any:
    app, machine, root = _nfs_machine(run)
    relative = run.render(step.path)
    path = f"{root.rstrip('/')}/{relative}"
    if step.action == "read":
        done = run.fly.exec_machine(app, machine, ["cat", path])
        exists = done.exit_code == 0
        return {"path": relative, "exists": exists, "content": done.stdout if exists else None}
    if step.action == "remove":
        done = run.fly.exec_machine(app, machine, ["rm", "-f", path])
    else:
        content = run.render(step.content) if step.content is not None else None
        if step.content_from is not None:
            earlier = records.get(step.content_from)
            if earlier is None or not earlier.ok or not (earlier.result or {}).get("exists"):
                raise StepFailed(f"nothing to write back: step {step.content_from} did not read {relative}")
            content = earlier.result["content"]
        parent = path.rsplit("/", 1)[0]
        script = f"mkdir -p {shlex.quote(parent)} && echo -n {shlex.quote(content or '')} > {shlex.quote(path)}"
        done = run.fly.exec_machine(app, machine, ["sh", "-c", script])
    if done.exit_code != 0:
        raise StepFailed(f"{step.action} of {relative} on {app} failed (exit {done.exit_code}): "
                         f"{(done.stderr or '').strip()[:300]}")
    return {"path": relative, "action": step.action}


def _token(run: Run, step: Any) -> Any:
    if step.action == "mint":
        org_id = str((run.slice.manifest.get("org") or {}).get("id") or "")
        if not org_id:
            raise StepFailed("the manifest has no org id to mint a token in")
        minted = run.fly.create_org_token(org_id, f"{run.slice.prefix}-e2e-{run.run_id}", expiry="1h")
        run.redactor.add(minted["token"])
        run.minted = {"id": minted["id"], "token": minted["token"]}
        return {"id": minted["id"], "name": minted.get("name")}
    if run.minted is None:
        raise StepFailed("no token to revoke: a `token` step with action mint must come first")
    run.fly.revoke_org_token(run.minted["id"])
    return {"revoked": run.minted["id"]}


def _validate(run: Run) -> Any:
    from controlplane.errors import ControlPlaneError
    from controlplane.infra import Infra, connection_for
    from controlplane.manifest import Slice as ManifestSlice
    from controlplane.validate import validate_slice

    try:
        slice_ = ManifestSlice.from_outputs(run.slice.manifest, source="the e2e run's manifest").check("the manifest")
        with Infra(slice_, connection_for(slice_, run.slice.org_token)) as infra:
            report = validate_slice(infra)
    except ControlPlaneError as exc:
        return {"ok": False, "passed": [], "failed": [str(exc)]}
    return {"ok": report.ok, "passed": report.passed, "failed": report.failed}


def _logs(run: Run, step: Any, records: dict[str, StepRecord], out: Path) -> Any:
    app = run.slice.app(step.app)
    entries = run.fly.app_logs(app, max_lines=LOG_EXCERPT_LINES)
    if step.since is not None:
        since = records[step.since].started if step.since in records else time.time()
        entries = [e for e in entries if _epoch(e.timestamp) >= since]
    lines = [e.line() for e in entries]
    run.write(out, "\n".join(lines) + "\n")
    return {"app": app, "lines": [e.message for e in entries], "excerpt": str(out.relative_to(run.evidence))}


def _epoch(timestamp: str) -> float:
    """RFC 3339, nanoseconds or not (flyctl parses it as time.RFC3339Nano)."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", timestamp)
    if not match:
        return 0.0
    base = datetime.fromisoformat(match.group(1) + (match.group(3).replace("Z", "+00:00")))
    return base.timestamp() + float(match.group(2) or 0)


def run_step(run: Run, step: Any, records: dict[str, StepRecord], variant_dir: Path) -> Any:
    if step.do == "mcp":
        return run.session(step.server).call(step.tool, run.render(step.args))
    if step.do == "machine":
        return _machine(run, step)
    if step.do == "worker":
        return _worker(run, step)
    if step.do == "secrets":
        return _secrets(run, step)
    if step.do == "nfs":
        return _nfs(run, step, records)
    if step.do == "token":
        return _token(run, step)
    if step.do == "validate":
        return _validate(run)
    if step.do == "logs":
        return _logs(run, step, records, variant_dir / "logs" / f"{step.name}.txt")
    raise StepFailed(f"unknown step kind {step.do}")


# -- expectations ---------------------------------------------------------------------------------------

Outcome = tuple[str, str]  # (passed | failed | not_observable, detail)


# What each expectation reads, by the kind of step it names.
_READS = {McpExpect: "mcp", ValidationExpect: "validate", SecretExpect: "secrets", LogExpect: "logs", NfsExpect: "nfs"}


def _needs(records: dict[str, StepRecord], name: str, kind: str | None = None) -> StepRecord | str:
    record = records.get(name)
    if record is None:
        return f"step {name} did not run, so this was not checked"
    if kind is not None and record.do != kind:
        return f"step {name} is a {record.do} step, not a {kind} step: nothing was checked"
    if not record.ok:
        return f"step {name} failed: {record.error}"
    return record


def evaluate(expect: Any, records: dict[str, StepRecord], snapshots: dict[str, Any], last_step: str,
             flysim: bool, run: Run) -> Outcome:
    if isinstance(expect, ServiceExpect):
        if flysim:
            return "not_observable", NOT_OBSERVABLE
        if expect.probe == "manual":
            return "not_observable", f"not checked by the runner: look at it by hand ({expect.what})"
        return _http_probe(run, expect)
    if isinstance(expect, MachinesExpect):
        step = expect.step or last_step
        if step not in snapshots:
            return "failed", f"no machine snapshot after step {step}: it did not run"
        machines = snapshots[step].get(expect.app)
        if machines is None:
            return "failed", f"the slice has no {expect.app} app"
        if expect.app == "worker_pool":
            machines = [m for m in machines if m.get("e2e_run") == run.run_id]
        if not machines:
            return "failed", f"no {expect.app} machine after step {step}"
        wrong = [f"{m['id']} {m['state']}" for m in machines if m["state"] != expect.state]
        return ("failed", f"after {step}, not {expect.state}: {', '.join(wrong)}") if wrong else \
            ("passed", f"after {step}: {', '.join(m['id'] for m in machines)} {expect.state}")
    record = _needs(records, expect.step, _READS.get(type(expect)))
    if isinstance(record, str):
        return "failed", record
    result = record.result or {}
    if isinstance(expect, McpExpect):
        if result.get("ok") != expect.ok:
            return "failed", (f"{'a tool error' if not result.get('ok') else 'an answer without error'}, "
                              f"expected {'success' if expect.ok else 'a tool error'}: {result.get('text', '')[:300]}")
        wanted = run.render(expect.contains)
        missing = [c for c in wanted if c not in result.get("text", "")]
        return ("failed", f"the answer lacks {missing}: {result.get('text', '')[:300]}") if missing else \
            ("passed", f"{'ok' if expect.ok else 'tool error'}; holds {wanted}")
    if isinstance(expect, ValidationExpect):
        if result.get("ok") != expect.ok:
            return "failed", f"phase 6 {'passed' if result.get('ok') else 'failed: ' + '; '.join(result.get('failed', []))}"
        failed = " ".join(result.get("failed", []))
        missing = [c for c in expect.failed_contains if c not in failed]
        return ("failed", f"the failed checks do not name {missing}: {failed}") if missing else \
            ("passed", "phase 6 " + ("passed" if expect.ok else f"failed as expected: {failed[:300]}"))
    if isinstance(expect, SecretExpect):
        digests = result.get("digests") or {}
        if (expect.name in digests) != expect.present:
            return "failed", f"{expect.name} is {'absent' if expect.present else 'still set'} after {expect.step}"
        if expect.same_as is not None:
            other = _needs(records, expect.same_as)
            if isinstance(other, str):
                return "failed", other
            before = (other.result or {}).get("digests", {}).get(expect.name)
            if before is None or before != digests.get(expect.name):
                return "failed", f"{expect.name} after {expect.step} is not the value it had at {expect.same_as}"
        return "passed", f"{expect.name} {'set' if expect.present else 'absent'}" + (
            f", same digest as at {expect.same_as}" if expect.same_as else "")
    if isinstance(expect, LogExpect):
        hits = [line for line in result.get("lines", []) if expect.contains in line]
        return ("passed", f"{len(hits)} line(s) with {expect.contains!r}") if hits else \
            ("failed", f"no log line of {result.get('app')} holds {expect.contains!r} ({len(result.get('lines', []))} read)")
    if isinstance(expect, NfsExpect):
        if bool(result.get("exists")) != expect.exists:
            return "failed", f"{result.get('path')} {'is missing' if expect.exists else 'is still there'}"
        if expect.json_fields:
            try:
                document = json.loads(result.get("content") or "")
            except ValueError:
                return "failed", f"{result.get('path')} is not JSON"
            missing = [f for f in expect.json_fields if not (isinstance(document, dict) and document.get(f))]
            if missing:
                return "failed", f"{result.get('path')} lacks {missing}"
        if expect.same_as is not None:
            other = _needs(records, expect.same_as)
            if isinstance(other, str):
                return "failed", other
            if (other.result or {}).get("content") != result.get("content"):
                return "failed", f"{result.get('path')} differs from what {expect.same_as} read"
        return "passed", f"{result.get('path')} {'as expected' if expect.exists else 'absent'}"
    return "failed", f"unknown expectation {type(expect).__name__}"


def _http_probe(run: Run, expect: ServiceExpect) -> Outcome:
    import httpx

    url = run.render(expect.url)
    try:
        response = httpx.get(url, follow_redirects=False, timeout=15)
    except httpx.HTTPError as exc:
        return "failed", f"GET {url}: {type(exc).__name__}"
    location = response.headers.get("location", "")
    if response.status_code not in expect.status:
        return "failed", f"GET {url}: {response.status_code}, expected one of {expect.status}"
    if expect.location_contains and expect.location_contains not in location:
        return "failed", f"GET {url}: redirects to {location!r}, not to {expect.location_contains!r}"
    return "passed", f"GET {url}: {response.status_code}"


# -- one variant of one scenario ------------------------------------------------------------------------

def run_variant(run: Run, scenario: Scenario, variant_name: str) -> dict[str, Any]:
    variant = scenario.variants[variant_name]
    out = run.evidence / scenario.id / variant_name
    records: dict[str, StepRecord] = {}
    snapshots: dict[str, Any] = {}
    step_errors: list[str] = []
    index = 0

    def keep_snapshot(label: str) -> None:
        nonlocal index
        try:
            snapshots[label] = run.snapshot()
        except Exception as exc:  # noqa: BLE001 - evidence only; the expectations on it then fail
            snapshots[label] = {"error": f"{type(exc).__name__}: {exc}"}
        run.write(out / "snapshots" / f"{index:02d}-{label}.json", snapshots[label])
        index += 1

    log(f"{scenario.id} {variant_name}: {variant.fault or scenario.title}")
    run.reset_workers()
    keep_snapshot("before")
    stopped = False
    last = "before"
    for phase, steps in (("steps", variant.steps), ("restore", variant.restore)):
        for step in steps:
            if step.skip:
                log(f"  step {step.name} skipped (switched off in the scenario file)")
                continue
            if stopped and phase == "steps":
                continue
            record = StepRecord(step.name, step.do, time.time())
            records[step.name] = record
            try:
                record.result = run_step(run, step, records, out)
            except Exception as exc:  # noqa: BLE001 - every failure is reported, then restore runs
                record.ok = False
                record.error = run.redactor.text(_describe(exc))
                step_errors.append(f"{step.name}: {record.error}")
                log(f"  step {step.name} FAILED: {record.error}")
                stopped = stopped or phase == "steps"
            else:
                log(f"  step {step.name} ok")
            keep_snapshot(step.name)
            if phase == "steps" and record.ok:
                last = step.name
    run.close_sessions()
    checks = []
    for expect in variant.expect:
        status, detail = evaluate(expect, records, snapshots, last, run.flysim, run)
        checks.append({"check": expect.check, "why": expect.why, "status": status, "detail": run.redactor.text(detail),
                       **({"what": expect.what} if isinstance(expect, ServiceExpect) else {}),
                       **({"step": getattr(expect, "step", None)} if getattr(expect, "step", None) else {})})
        log(f"  expect {expect.check}: {status.upper()} {detail}")
    run.write(out / "steps.json", [{"name": r.name, "do": r.do, "ok": r.ok, "error": r.error,
                                    "result": run.redactor.value(r.result)} for r in records.values()])
    failed = bool(step_errors) or any(c["status"] == "failed" for c in checks)
    if not [c for c in checks if c["status"] == "passed"]:
        failed = True
        step_errors.append("no expectation could be checked on this target: nothing was shown")
    return {"scenario": scenario.id, "variant": variant_name, "fault": variant.fault, "ok": not failed,
            "step_errors": step_errors, "expectations": checks}


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {text}"


# -- the command ----------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ops e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--scenario", nargs="+", metavar="ID", help="scenario ids, e.g. ROUTER-001 FAULT-050")
    which.add_argument("--smoke", action="store_true", help=f"the nightly subset: {', '.join(SMOKE)}")
    which.add_argument("--all", action="store_true", help="every scenario")
    p.add_argument("--variant", choices=["happy", "unhappy", "both"], default="both")
    p.add_argument("--strategy", choices=["ephemeral", "staging", "fixture-pool"], required=True)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--stack", help="staging/fixture-pool: the slice's stack (its outputs and token)")
    source.add_argument("--manifest", type=Path, metavar="FILE",
                        help="staging/fixture-pool: the slice's outputs (`pulumi stack output --json`); the org "
                             "token from FLY_ORG_TOKEN")
    p.add_argument("--work-dir", type=Path, help="the stack's project directory (default: this repo)")
    p.add_argument("--run-id", help="ephemeral: the slice is org1-e2e-<run id> (default: a random one)")
    p.add_argument("--fly", choices=["flysim", "fly"], default="flysim",
                   help="ephemeral: on a flysim of the run's own (default) or on Fly with FLY_API_TOKEN")
    p.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="ephemeral: keep the cycle's files (file backend, passphrase) in DIR, so that "
                        "`scripts/ephemeral-cycle --run-id ID --fly fly --state-dir DIR --cleanup-only` finds the "
                        "slice should this run be killed")
    p.add_argument("--scenarios-dir", type=Path, default=SCENARIOS_DIR, metavar="DIR")
    p.add_argument("--out", type=Path, default=REPO / "artifacts" / "e2e",
                   help="evidence goes to OUT/<timestamp>/ (default artifacts/e2e)")
    args = p.parse_args(argv)
    if args.strategy == "ephemeral" and (args.stack or args.manifest):
        p.error("--strategy ephemeral makes its own slice: --stack and --manifest are for staging and fixture-pool")
    if args.strategy != "ephemeral" and (args.run_id or args.state_dir or args.fly != "flysim"):
        p.error("--run-id, --state-dir and --fly are for --strategy ephemeral")
    if args.strategy != "ephemeral" and not (args.stack or args.manifest):
        p.error(f"--strategy {args.strategy} needs the slice: --stack NAME or --manifest FILE")
    return args


def select(args: argparse.Namespace) -> list[Scenario]:
    scenarios = load_all(args.scenarios_dir)
    ids = list(SMOKE) if args.smoke else sorted(scenarios) if args.all else args.scenario
    unknown = [i for i in ids if i not in scenarios]
    if unknown:
        raise ScenarioError(f"unknown scenario {', '.join(unknown)}: known are {', '.join(sorted(scenarios))} "
                            f"(files in {args.scenarios_dir})")
    return [scenarios[i] for i in ids]


def _is_flysim(api_base_url: str) -> bool:
    import httpx

    try:
        answer = httpx.get(api_base_url.rstrip("/") + "/__flysim/health", timeout=5)
        return answer.status_code == 200 and answer.json() == {"ok": True}
    except (httpx.HTTPError, ValueError):
        return False


def execute(args: argparse.Namespace, scenarios: list[Scenario], slice_: Slice, deployer_token: str,
            run_id: str) -> int:
    from fly import FlyClient, FlyConnection

    variants = list(VARIANTS) if args.variant == "both" else [args.variant]
    evidence = args.out / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    while evidence.exists():
        evidence = evidence.with_name(evidence.name + "-" + secrets.token_hex(2))
    redactor = Redactor()
    for value in (slice_.org_token, deployer_token):
        redactor.add(value)
    fly_cfg = slice_.manifest.get("fly") or {}
    connection = FlyConnection.resolve(token=deployer_token, api_base_url=fly_cfg.get("api_base_url") or None,
                                       flaps_base_url=fly_cfg.get("flaps_base_url") or None)
    flysim = _is_flysim(connection.api_base_url)
    results: list[dict[str, Any]] = []
    with FlyClient(connection) as fly:
        run = Run(slice=slice_, fly=fly, flysim=flysim, evidence=evidence, run_id=run_id, strategy=args.strategy,
                  redactor=redactor, mcp_env={**_mcp_env(), **slice_.engine_env})
        run.write(evidence / "manifest.json", {
            "run_id": run_id, "strategy": args.strategy, "target": "flysim" if flysim else "fly",
            "fly": {"api_base_url": connection.api_base_url, "flaps_base_url": connection.flaps_base_url},
            "stack": slice_.stack, "scenarios": [s.id for s in scenarios], "variants": variants,
            "slice": slice_.manifest,
            "scenario_files": {s.id: json.loads((args.scenarios_dir / f"{s.id}.json").read_text()) for s in scenarios}})
        log(f"run {run_id}: {len(scenarios)} scenario(s) x {len(variants)} variant(s) on "
            f"{'flysim' if flysim else 'Fly'} ({slice_.prefix}, strategy {args.strategy}); evidence in {evidence}")
        try:
            for scenario in scenarios:
                for variant in variants:
                    try:
                        results.append(run_variant(run, scenario, variant))
                    except Exception as exc:  # noqa: BLE001 - one broken variant does not hide the others
                        results.append({"scenario": scenario.id, "variant": variant, "ok": False,
                                        "step_errors": [redactor.text(_describe(exc))], "expectations": []})
                if args.strategy != "staging":
                    with _suppress_logged("sweeping the run's worker machines"):
                        run.reset_workers()
        finally:
            run.close_sessions(keep_slice=False)
    ok = all(r["ok"] for r in results)
    run.write(evidence / "result.json", {"ok": ok, "run_id": run_id, "target": "flysim" if flysim else "fly",
                                         "results": results})
    run.write(evidence / "summary.md", summary(results, flysim, run_id))
    print(summary(results, flysim, run_id))
    log(f"evidence: {evidence}")
    return 0 if ok else 1


class _suppress_logged:
    def __init__(self, doing: str) -> None:
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, _tb: Any) -> bool:
        if exc is not None and isinstance(exc, Exception):
            log(f"{self.doing} failed: {_describe(exc)}")
            return True
        return False


def summary(results: list[dict[str, Any]], flysim: bool, run_id: str) -> str:
    lines = [f"# e2e run {run_id} on {'flysim' if flysim else 'Fly'}", ""]
    for r in results:
        counts = {s: sum(1 for c in r["expectations"] if c["status"] == s)
                  for s in ("passed", "failed", "not_observable")}
        lines.append(f"- **{r['scenario']} {r['variant']}**: {'PASS' if r['ok'] else 'FAIL'} "
                     f"({counts['passed']} passed, {counts['failed']} failed, "
                     f"{counts['not_observable']} not observable here)")
        for c in r["expectations"]:
            if c["status"] != "passed":
                lines.append(f"  - {c['status']}: {c['check']}{' (' + c['what'] + ')' if c.get('what') else ''}: "
                             f"{c['detail']}")
        for e in r["step_errors"]:
            lines.append(f"  - step error: {e}")
    lines += ["", f"Result: {'every observable expectation held' if all(r['ok'] for r in results) else 'FAILED'}."]
    return "\n".join(lines) + "\n"


def _mcp_env() -> dict[str, str]:
    from .mcp import server_env

    return server_env()


def _existing_slice(args: argparse.Namespace) -> Slice:
    if args.stack:
        from ops.stack import stack_outputs

        outputs = stack_outputs(args.stack, args.work_dir)
        token = str(outputs.get("controlPlaneToken") or os.environ.get("FLY_ORG_TOKEN") or "")
        public = {k: v for k, v in outputs.items() if k != "controlPlaneToken"}
        return Slice(manifest=public, org_token=token, stack=args.stack, work_dir=args.work_dir or REPO)
    try:
        manifest = json.loads(args.manifest.read_text())
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"--manifest {args.manifest}: cannot read it as JSON ({exc})") from None
    manifest = {k: v for k, v in manifest.items() if k != "controlPlaneToken"}
    return Slice(manifest=manifest, org_token=os.environ.get("FLY_ORG_TOKEN", ""), stack=None,
                 work_dir=args.work_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        scenarios = select(args)
    except ScenarioError as exc:
        log(str(exc))
        return 2
    run_id = args.run_id or secrets.token_hex(3)
    if args.strategy == "ephemeral":
        from ops.cycle import main as cycle_main

        status: dict[str, int] = {}

        def between(outputs: dict[str, Any], stack: str, work_dir: Path, env: dict[str, str]) -> bool:
            token = str(outputs.get("controlPlaneToken") or "")
            public = {k: v for k, v in outputs.items() if k != "controlPlaneToken"}
            status["e2e"] = execute(args, scenarios, Slice(public, token, stack, work_dir, dict(env)),
                                    os.environ.get("FLY_API_TOKEN", ""), run_id)
            return status["e2e"] == 0

        if args.fly == "flysim" and not os.environ.get("CLERK_SECRET_KEY"):
            # A key of the simulated slice's own, so ROUTER-001 has one to remove and set again.
            os.environ["CLERK_SECRET_KEY"] = "sk_test_e2e_" + secrets.token_urlsafe(18)
        cycle_status = cycle_main(["--run-id", run_id, "--fly", args.fly,
                                   *(["--state-dir", str(args.state_dir)] if args.state_dir else [])], between=between)
        if "e2e" not in status:
            log("the scenarios did not run: the slice did not come up (see above)")
            return 1
        return status["e2e"] or cycle_status
    deployer = os.environ.get("FLY_API_TOKEN", "")
    try:
        slice_ = _existing_slice(args)
    except ScenarioError as exc:
        log(str(exc))
        return 2
    if not slice_.org_token:
        log("no org token for the slice: FLY_ORG_TOKEN (or --stack, whose controlPlaneToken output is used)")
        return 2
    if not deployer:
        log("FLY_API_TOKEN is not set: the faults are injected with the deployer's token (an org token)")
        return 2
    from fly import FlyConfigError

    try:
        return execute(args, scenarios, slice_, deployer, run_id)
    except FlyConfigError as exc:  # a malformed endpoint in the manifest or the environment
        log(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())

