"""enginejob/pulumi_lock.py on the real engine: a `pulumi up` that dies without unlocking (as one does when the
interrupt of a cancel lands while it starts or finishes) leaves its lock; the next update is refused with
Pulumi's words, which the caller hears as who holds it, that it is gone, and how to recover; releasing what
exactly that process left makes the stack updatable again, and leaves a live holder's lock alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enginejob import procs, pulumi_lock

pytestmark = pytest.mark.e2e


def _up(pulumi_bin: Path, project: Path, env: dict[str, str], **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([str(pulumi_bin / "pulumi"), "up", "--yes", "--skip-preview", "--non-interactive",
                             "--stack", "s"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def test_the_lock_a_dead_engine_left_is_named_then_released(tmp_path: Path, pulumi_bin: Path) -> None:
    project, backend = tmp_path / "project", tmp_path / "backend"
    project.mkdir()
    backend.mkdir()
    (project / "Pulumi.yaml").write_text(f"name: locktest\nruntime:\n  name: python\n  options:\n"
                                         f"    virtualenv: {sys.prefix}\n")
    (project / "__main__.py").write_text("import pulumi, time\ntime.sleep(float(pulumi.Config().get('sleep') or 0))\n")
    url = f"file://{backend}"
    marker = str(tmp_path / "job")  # every process of the run carries it, for the cleanup (as a job's do)
    env = {**os.environ, "PULUMI_BACKEND_URL": url, "PULUMI_CONFIG_PASSPHRASE": "test", "PULUMI_HOME": str(tmp_path / "home"),
           "PULUMI_SKIP_UPDATE_CHECK": "true", "PATH": f"{pulumi_bin}{os.pathsep}{os.environ['PATH']}",
           procs.MARKER: marker}
    subprocess.run([str(pulumi_bin / "pulumi"), "stack", "init", "s", "--non-interactive"], cwd=project, env=env,
                   check=True, capture_output=True)
    subprocess.run([str(pulumi_bin / "pulumi"), "config", "set", "sleep", "60", "--stack", "s"], cwd=project, env=env,
                   check=True, capture_output=True)
    try:
        # An update in flight holds the lock; the engine dies without releasing it.
        dead = _up(pulumi_bin, project, env)
        deadline = time.monotonic() + 60
        while not pulumi_lock.locks_of(url, "locktest", "s"):
            assert dead.poll() is None and time.monotonic() < deadline, dead.stdout.read() if dead.stdout else ""
            time.sleep(0.05)
        [left] = pulumi_lock.locks_of(url, "locktest", "s") or []
        assert left.pid == dead.pid and left.alive() is True
        # Another update meanwhile: refused, and told the holder still runs (nothing to release).
        refused = _up(pulumi_bin, project, env)
        output = refused.communicate(timeout=120)[0]
        what, fix = pulumi_lock.locked_message(output, "s") or ("", "")
        assert f"(process {dead.pid})" in what and "still running" in what, output
        assert fix.startswith("wait for that update to finish")
        assert pulumi_lock.locked_message("error: something else", "s") is None
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=30)
        procs.kill_marked(marker)
        assert left.alive() is False and pulumi_lock.locks_of(url, "locktest", "s") == [left]

        # The next update: refused by Pulumi; the caller hears who holds it, that it is gone, and the fix.
        refused = _up(pulumi_bin, project, env)
        output = refused.communicate(timeout=120)[0]
        assert refused.returncode != 0
        what, fix = pulumi_lock.locked_message(output, "s") or ("", "")
        assert f"(process {dead.pid})" in what and "no longer running" in what, what
        assert "pulumi cancel --yes --stack s" in fix and "nothing holds it" in fix

        # Released: only the locks of the given processes, and only once they are dead.
        assert pulumi_lock.release_left_by(url, "locktest", "s", {os.getpid()}) == []
        assert pulumi_lock.release_left_by(url, "locktest", "s", {dead.pid}) == [left]
        assert pulumi_lock.locks_of(url, "locktest", "s") == [] and not list(left.path.parent.glob("*.attrs"))
        subprocess.run([str(pulumi_bin / "pulumi"), "config", "set", "sleep", "0", "--stack", "s"], cwd=project,
                       env=env, check=True, capture_output=True)
        done = _up(pulumi_bin, project, env)
        output = done.communicate(timeout=120)[0]
        assert done.returncode == 0, output
    finally:
        procs.kill_marked(marker)

