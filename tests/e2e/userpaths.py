"""What the tests of the paths users walk share: a preview as the user sees it (each resource's planned
step and the messages), `pulumi` CLI runs in a process group of their own (so a test can kill them as a
crash would), the documentation's own command blocks (docs/*.md), and flysim's view of one slice.

Built on ``harness.make_stack``/``SliceStack`` (a stack in a temporary project on a file backend)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pulumi import automation as auto

from .harness import REPO, SliceStack

CLI_TIMEOUT = 300
# One step per resource: a replacement shows as several engine steps.
_REPLACE_OPS = {"replace", "create-replacement", "delete-replaced", "discard-replaced"}


# -- what a preview shows ------------------------------------------------------------------------------

def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


@dataclass
class Plan:
    """A preview as its user reads it: the step planned for each resource (by resource name), the
    summary and the diagnostics (warnings, errors) the engine printed."""

    steps: dict[str, str]
    summary: dict[str, int]
    messages: list[str]
    stdout: str
    # The keys each changed resource's step changes, as the engine reports them (from the provider's diff).
    keys: dict[str, list[str]] = field(default_factory=dict)

    def changes(self) -> dict[str, str]:
        return {name: op for name, op in sorted(self.steps.items()) if op != "same"}

    def warnings_and_errors(self) -> list[str]:
        return [m for m in self.messages if m.startswith(("warning", "error"))]


def plan_from_events(events: list[auto.EngineEvent], summary: dict[str, int], stdout: str) -> Plan:
    steps: dict[str, str] = {}
    keys: dict[str, list[str]] = {}
    messages: list[str] = []
    for event in events:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            op = meta.op.value if hasattr(meta.op, "value") else str(meta.op)
            name = resource_name(meta.urn)
            if meta.type == "pulumi:pulumi:Stack" or meta.type.startswith("pulumi:providers:"):
                continue  # the engine's own plumbing, not a part of the slice
            steps[name] = "replace" if op in _REPLACE_OPS or steps.get(name) == "replace" else op
            if meta.diffs:
                keys[name] = sorted(set(keys.get(name, [])) | set(meta.diffs))
        elif event.diagnostic_event is not None:
            diag = event.diagnostic_event
            messages.append(f"{diag.severity}: {diag.message.strip()}")
    return Plan(steps=steps, summary=dict(summary), messages=messages, stdout=stdout, keys=keys)


def preview(s: SliceStack) -> Plan:
    """``pulumi preview --diff`` through the Automation API; raises CommandError when the preview fails."""
    events: list[auto.EngineEvent] = []
    result = s.stack.preview(on_output=s.events.append, on_event=events.append, color="never", diff=True)
    return plan_from_events(events, result.change_summary, result.stdout)


def preview_error(s: SliceStack) -> str | None:
    """The message of a failing preview, or None when it succeeds."""
    try:
        preview(s)
    except auto.errors.CommandError as exc:
        return str(exc)
    return None


# -- flysim's view of one slice --------------------------------------------------------------------------

@dataclass
class SliceView:
    """One snapshot of flysim's state, narrowed to the apps of one slice (``<prefix>-*``)."""

    prefix: str
    state: dict[str, Any]

    @property
    def apps(self) -> dict[str, dict[str, Any]]:
        return {a["name"]: a for a in self.state["apps"] if a["name"].startswith(self.prefix + "-")}

    def app(self, role: str) -> dict[str, Any]:
        name = f"{self.prefix}-{role}"
        assert name in self.apps, f"app {name} is not in flysim; apps there: {sorted(self.apps)}"
        return self.apps[name]

    def machines(self, role: str) -> list[dict[str, Any]]:
        """The app's machines that are not destroyed."""
        return [m for m in self.app(role)["machines"] if m["state"] not in ("destroyed", "destroying")]

    def volumes(self, role: str = "nfs") -> list[dict[str, Any]]:
        return [v for v in self.app(role)["volumes"] if v["state"] not in ("destroyed", "destroying",
                                                                           "pending_destroy")]

    def tokens(self) -> list[dict[str, Any]]:
        """Every org token the slice's name was given, revoked or not."""
        return [t for t in self.state.get("tokens", []) if t["name"] == f"{self.prefix}-control-plane"]

    def live_tokens(self) -> list[dict[str, Any]]:
        return [t for t in self.tokens() if not t["revoked"]]


def view(flysim: Any, prefix: str) -> SliceView:
    return SliceView(prefix, flysim.state())


def mutating_calls(flysim: Any) -> list[str]:
    return [f"{c['method']} {c['path']} ({c.get('graphql') or c['operation']})" for c in flysim.calls()
            if c["mutating"]]


def calls_summary(flysim: Any) -> list[str]:
    return [f"{c['method']} {c['path']} {c['status']}" for c in flysim.calls()]


# -- the stack's own record -----------------------------------------------------------------------------

def state_resources(s: SliceStack) -> dict[str, dict[str, Any]]:
    """The stack's resources by name (``pulumi stack export``), with their outputs."""
    deployment = s.stack.export_stack().deployment or {}
    return {resource_name(r["urn"]): r for r in deployment.get("resources") or []}


def pending_operations(s: SliceStack) -> list[dict[str, Any]]:
    deployment = s.stack.export_stack().deployment or {}
    return list(deployment.get("pending_operations") or [])


def state_file_text(s: SliceStack) -> str:
    """The stack's state as the backend stores it (secrets encrypted; `export_stack` would decrypt them)."""
    backend = Path(s.stack.workspace.env_vars["PULUMI_BACKEND_URL"].removeprefix("file://"))
    files = list(backend.glob(f".pulumi/stacks/**/{s.stack.name}.json"))
    assert files, f"no state file of {s.stack.name} in {backend}"
    return "".join(f.read_text() for f in files)


# -- the CLI, as a user runs it ------------------------------------------------------------------------

@dataclass
class Cli:
    """``pulumi`` subprocesses for one stack, with the stack's environment (backend, passphrase,
    PULUMI_HOME, FLY_API_TOKEN), each in a process group of its own."""

    s: SliceStack
    log_dir: Path
    runs: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "FLY_"))}
        env.update(self.s.stack.workspace.env_vars)
        return env

    def argv(self, *args: str) -> list[str]:
        return ["pulumi", *args, "--stack", self.s.stack.name, "--non-interactive", "--color", "never"]


    def shell(self, script: str, *, extra_env: dict[str, str] | None = None,
              timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run user-facing shell lines (e.g. a block of docs/real-slice.md) in the project directory."""
        env = {**self.env, **(extra_env or {})}
        started = time.monotonic()
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.s.work_dir, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
        self.runs.append(f"$ {script} -> {proc.returncode} in {time.monotonic() - started:.1f}s\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return proc

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            return subprocess.Popen(self.argv(*args), cwd=self.s.work_dir, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def session_members(sid: int) -> list[int]:
    """Live processes of a session. A run's plugins may get process groups of their own (the engine
    starts them so), but they stay in the session the run was started in."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):  # state, ppid, pgrp, session, ...
            members.append(int(stat.parent.name))
    return members


def kill_run(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run and everything it started (engine, language host, program, provider
    processes), as a crash of the machine or a CI runner killing a job's process tree would, and wait
    until none of them is left. The run was started in a session of its own."""
    deadline = time.monotonic() + 10
    while True:
        # The engine first: a plugin killed before it would let it write a last checkpoint, which
        # the kill could then cut short (see docs/real-slice.md, "When a run is interrupted").
        members = sorted(session_members(proc.pid), key=lambda pid: pid != proc.pid)
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.wait(timeout=10)
        if not members:
            return
        assert time.monotonic() < deadline, f"processes of the killed run survive: {members}"
        time.sleep(0.05)


def wait_until(condition: Callable[[], Any], *, what: str, timeout: float = 120,
               alive: subprocess.Popen[bytes] | None = None, log: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"the run ended (exit {alive.returncode}) before {what}:\n{log()[-5000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log()[-5000:]}")
        time.sleep(0.2)  # flysim shares this process: polls must not starve it


# -- the documentation's command blocks ------------------------------------------------------------------

def doc_block(page: str, heading: str) -> list[str]:
    """The command lines of the first ```sh block under ``heading`` in ``page`` (a path from the checkout's
    root, e.g. "docs/real-slice.md"), comments and blank lines dropped: what a reader types."""
    text = (REPO / page).read_text()
    match = re.search(rf"^#+ {re.escape(heading)}\s*$", text, flags=re.M)
    assert match, f"{page} has no section {heading!r}"
    block = re.search(r"```sh\n(.*?)```", text[match.end():], flags=re.S)
    assert block, f"{page} section {heading!r} has no ```sh block"
    lines = []
    for line in block.group(1).splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command and not command.startswith("#"):
            lines.append(command)
    return lines
