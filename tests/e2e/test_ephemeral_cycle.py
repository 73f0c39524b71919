"""scripts/ephemeral-cycle (`python -m ops cycle`), the e2e cycle CI runs against real Fly, run here against
its own flysim: up, validate and an unconditional teardown that leaves nothing behind, also when `up` fails
midway, the cycle is stopped by a signal, or it is killed and `--cleanup-only` follows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ephemeral-cycle"
TIMEOUT = 600


@dataclass
class Cycle:
    returncode: int
    output: str
    stack: str
    sim_state: dict
    backend: Path
    tmp: Path

    @property
    def prefix(self) -> str:
        return self.stack  # artifact-slice:prefix defaults to the stack name

    def apps_left(self) -> list[str]:
        return [a["name"] for a in self.sim_state["apps"] if a["name"].startswith(self.prefix + "-")]


def _env(tmp_path: Path, pulumi_bin: Path) -> tuple[dict[str, str], Path]:
    backend = tmp_path / "backend"
    backend.mkdir()
    env = dict(os.environ)
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_ACCESS_TOKEN",
                 "FLY_API_TOKEN", "FLY_ACCESS_TOKEN", "FLY_API_BASE_URL", "FLY_FLAPS_BASE_URL", "GITHUB_ACTIONS"):
        env.pop(name, None)
    env.update({
        "PATH": f"{pulumi_bin}{os.pathsep}{env.get('PATH', '')}",
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "TMPDIR": str(tmp_path / "tmp"),  # the script's own temp dir goes here, to check it is removed
    })
    (tmp_path / "tmp").mkdir()
    return env, backend


def _finish(proc_returncode: int, output: str, stack: str, state_file: Path, backend: Path, tmp: Path) -> Cycle:
    assert state_file.is_file(), f"no simulator state was saved; output:\n{output[-4000:]}"
    return Cycle(proc_returncode, output, stack, json.loads(state_file.read_text()), backend, tmp)


def run_cycle(tmp_path: Path, pulumi_bin: Path, *args: str) -> Cycle:
    env, backend = _env(tmp_path, pulumi_bin)
    run_id = f"t{uuid.uuid4().hex[:8]}"
    state_file = tmp_path / "flysim-state.json"
    proc = subprocess.run([str(SCRIPT), "--run-id", run_id, "--keep-flysim-state", str(state_file), *args],
                          cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    return _finish(proc.returncode, proc.stdout, f"org1-e2e-{run_id}", state_file, backend, tmp_path)


def assert_nothing_left(cycle: Cycle, pulumi_bin: Path) -> None:
    tail = cycle.output[-4000:]
    assert cycle.apps_left() == [], f"apps left in the simulator: {cycle.apps_left()}\n{tail}"
    # The stack is gone from the backend: `pulumi stack ls` doesn't know it, its state file is gone.
    env = dict(os.environ)
    env.update({"PULUMI_BACKEND_URL": f"file://{cycle.backend}", "PULUMI_SKIP_UPDATE_CHECK": "true"})
    listed = subprocess.run([str(pulumi_bin / "pulumi"), "stack", "ls", "--all", "--json", "--non-interactive"],
                            cwd=cycle.tmp, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [s for s in json.loads(listed.stdout) if cycle.stack in s["name"]] == [], listed.stdout
    assert list(cycle.backend.rglob(f"stacks/**/{cycle.stack}.json")) == []
    # No stack file in the checkout, no temp dir of the run left behind.
    assert list(REPO.glob(f"Pulumi.{cycle.stack}.yaml")) == []
    assert list((cycle.tmp / "tmp").iterdir()) == [], "the run's temp dir was not removed"
    assert f"nothing of {cycle.prefix} is left" in cycle.output, tail
    # Generated secrets (the simulator's token, the run's passphrase) are never printed.
    assert not re.search(r"(flysim|e2e)_[A-Za-z0-9_-]{20,}", cycle.output)


def test_cycle_against_flysim_succeeds_and_leaves_nothing(tmp_path: Path, pulumi_bin: Path) -> None:
    cycle = run_cycle(tmp_path, pulumi_bin)
    assert cycle.returncode == 0, cycle.output[-6000:]
    # It really did stand the slice up and validate it (phase 6) before tearing it down.
    assert f"validate (phase 6) {cycle.stack}" in cycle.output
    assert f"app {cycle.prefix}-nfs (nfs) exists" in cycle.output and re.search(r"\b0 failed\b", cycle.output)
    assert f"stack {cycle.stack} removed from the backend" in cycle.output
    assert cycle.output.rstrip().endswith("ephemeral-cycle: result: ok")
    assert_nothing_left(cycle, pulumi_bin)


def test_up_failing_midway_still_tears_down(tmp_path: Path, pulumi_bin: Path) -> None:
    cycle = run_cycle(tmp_path, pulumi_bin, "--fail-midway", "--flysim-latency", "zero")
    assert cycle.returncode != 0, cycle.output[-6000:]
    assert "FAILED: pulumi up" in cycle.output
    assert "injected by ephemeral-cycle --fail-midway" in cycle.output  # the machine creates did fail
    assert "validate (phase 6)" not in cycle.output  # no validation of a broken slice
    assert f"stack {cycle.stack} removed from the backend" in cycle.output
    assert "result: FAILED: pulumi up" in cycle.output
    assert_nothing_left(cycle, pulumi_bin)


@pytest.mark.parametrize("to_group", [False, True], ids=["sigterm-to-the-cycle", "ctrl-c-to-the-process-group"])
def test_signal_during_up_still_tears_down(tmp_path: Path, pulumi_bin: Path, to_group: bool) -> None:
    """A cancelled CI job (SIGTERM to the cycle) or a Ctrl-C at a terminal (SIGINT to the whole foreground
    process group) while `up` is in flight (the NFS machine's create hangs a few seconds, its app exists):
    pulumi gets one SIGINT and cancels the update gracefully, then the teardown removes what it made."""
    env, backend = _env(tmp_path, pulumi_bin)
    run_id = f"t{uuid.uuid4().hex[:8]}"
    state_file = tmp_path / "flysim-state.json"
    log = tmp_path / "cycle.log"
    hang = json.dumps({"operation": "Machines_create", "kind": "hang", "seconds": 5, "count": 1})
    with log.open("w") as out:
        proc = subprocess.Popen([str(SCRIPT), "--run-id", run_id, "--keep-flysim-state", str(state_file),
                                 "--flysim-fault", hang], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=to_group)
        try:
            deadline = time.monotonic() + 300
            while not re.search(r"\bnfs-machine creating\b", log.read_text()):
                assert proc.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, "the cycle never reached the NFS machine's create"
                time.sleep(0.1)
            time.sleep(0.5)  # the machine create is in flight (it hangs): stop the job now
            if to_group:
                os.killpg(proc.pid, signal.SIGINT)
            else:
                proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    output = log.read_text()
    cycle = _finish(returncode, output, f"org1-e2e-{run_id}", state_file, backend, tmp_path)
    sig = signal.SIGINT if to_group else signal.SIGTERM
    assert cycle.returncode == 128 + sig, output[-6000:]
    assert f"got {sig.name}" in output and f"result: stopped by {sig.name}" in output
    before, after = output.split(f"got {sig.name}", 1)
    assert re.search(r"\bnfs-app created\b", before), "nothing was created before the signal: the test proves nothing"
    # pulumi cancelled gracefully: one SIGINT reached it (a second would kill it), none reached its plugins.
    assert "update canceled" in after and after.count("^C received") == 1
    # The engine closes the program it no longer waits for with SIGINT: no traceback (__main__.py).
    assert "KeyboardInterrupt" not in output and "Traceback" not in output
    assert re.search(r"\bnfs-app deleted\b", after)  # and the teardown's destroy removed what it made
    assert "validate (phase 6)" not in output
    assert_nothing_left(cycle, pulumi_bin)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of a session, as a runner kills a cancelled job's process tree."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the command: state, ppid, pgrp, session, ...
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_cleanup_only_after_a_killed_cycle_on_fly(tmp_path: Path, pulumi_bin: Path) -> None:
    """`--fly fly` as CI runs it (a Fly API at FLY_API_BASE_URL, here a flysim of the test's own), killed
    mid-`up` with everything it started; then the workflow's teardown step, `--cleanup-only` with the
    same run id and state dir, finds the stack (own file backend, generated passphrase), releases its
    stale lock, destroys and removes it and sweeps what the state lost track of."""
    from flysim.testing import FlysimServer

    env, _ = _env(tmp_path, pulumi_bin)
    del env["PULUMI_BACKEND_URL"]  # the CI default: a file backend in the state dir
    run_id = f"t{uuid.uuid4().hex[:8]}"
    prefix = f"org1-e2e-{run_id}"
    state_dir = tmp_path / "state"
    argv = [str(SCRIPT), "--run-id", run_id, "--fly", "fly", "--state-dir", str(state_dir)]
    with FlysimServer(orgs=["org1"]) as fly:
        env.update({"FLY_API_TOKEN": fly.token, "FLY_API_BASE_URL": fly.url, "FLY_FLAPS_BASE_URL": fly.url})
        fly.add_fault(operation="Machines_create", kind="hang", seconds=5, count=1)
        log = tmp_path / "cycle.log"
        with log.open("w") as out:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                deadline = time.monotonic() + 300
                while not any(a["name"].startswith(prefix + "-") for a in fly.state()["apps"]):
                    assert proc.poll() is None, log.read_text()[-4000:]
                    assert time.monotonic() < deadline, "the cycle never created an app"
                    time.sleep(0.1)
                time.sleep(1)
            finally:
                _kill_session(proc.pid)
                proc.wait(timeout=30)
        assert [a for a in fly.state()["apps"] if a["name"].startswith(prefix + "-")], "nothing to clean up"
        assert (state_dir / "passphrase").is_file() and list(state_dir.glob("backend/**/*.json"))

        cleanup = subprocess.run([*argv, "--cleanup-only"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
        left = [a["name"] for a in fly.state()["apps"] if a["name"].startswith(prefix + "-")]
    out = cleanup.stdout
    assert cleanup.returncode == 0, out[-6000:]
    assert left == [], out[-4000:]
    assert f"stack {prefix} removed from the backend" in out and out.rstrip().endswith("result: ok")
    assert not list(state_dir.glob("backend/.pulumi/stacks/**/*.json"))
    assert not (state_dir / "passphrase").exists() and not (state_dir / "project").exists()
    assert not re.search(r"(flysim|e2e)_[A-Za-z0-9_-]{20,}", out)
