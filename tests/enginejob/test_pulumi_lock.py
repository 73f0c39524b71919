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

from enginejob import Runner, procs, pulumi_lock

pytestmark = pytest.mark.e2e

ENTRIES = str(Path(__file__).resolve().parent)


def _up(pulumi_bin: Path, project: Path, env: dict[str, str], **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([str(pulumi_bin / "pulumi"), "up", "--yes", "--skip-preview", "--non-interactive",
                             "--stack", "s"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def _project(tmp_path: Path, pulumi_bin: Path, program: str) -> tuple[Path, str, dict[str, str]]:
    """A one-stack project ("locktest", stack "s") on a file backend of its own: its directory, the backend's
    URL and the engine's environment."""
    project, backend = tmp_path / "project", tmp_path / "backend"
    project.mkdir()
    backend.mkdir()
    (project / "Pulumi.yaml").write_text(f"name: locktest\nruntime:\n  name: python\n  options:\n"
                                         f"    virtualenv: {sys.prefix}\n")
    (project / "__main__.py").write_text(program)
    url = f"file://{backend}"
    env = {"PULUMI_BACKEND_URL": url, "PULUMI_CONFIG_PASSPHRASE": "test", "PULUMI_HOME": str(tmp_path / "home"),
           "PULUMI_SKIP_UPDATE_CHECK": "true", "PATH": f"{pulumi_bin}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(pulumi_bin / "pulumi"), "stack", "init", "s", "--non-interactive"], cwd=project,
                   env={**os.environ, **env}, check=True, capture_output=True)
    return project, url, env


def _until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_lock_a_dead_engine_left_is_named_then_released(tmp_path: Path, pulumi_bin: Path) -> None:
    project, url, engine_env = _project(
        tmp_path, pulumi_bin, "import pulumi, time\ntime.sleep(float(pulumi.Config().get('sleep') or 0))\n")
    marker = str(tmp_path / "job")  # every process of the run carries it, for the cleanup (as a job's do)
    env = {**os.environ, **engine_env, procs.MARKER: marker}
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



def test_a_job_releases_the_lock_of_the_engine_it_interrupted(tmp_path: Path, pulumi_bin: Path) -> None:
    """The job's interrupt, then the CLI's death before it unlocks (as when the SIGINT lands as it finishes;
    here a SIGKILL while it waits for its language host, whose program ignores SIGINT): the job releases the
    lock that CLI left, and the stack updates again."""
    project, url, env = _project(tmp_path, pulumi_bin, "import signal, time\nsignal.signal(signal.SIGINT, "
                                 "signal.SIG_IGN)\nopen('started', 'w').close()\ntime.sleep(60)\n")
    runner = Runner(tmp_path / "state")
    job = runner.start("entries:pulumi_up", {"project": str(project)}, kind="test", title="an up", env=env,
                       pythonpath=[ENTRIES])
    _until(lambda: (project / "started").exists(), "the program to run")
    [cli] = [pid for pid in procs.marked(str(runner.jobs_dir)) if pulumi_lock.locks_of(url, "locktest", "s")
             and pid == pulumi_lock.locks_of(url, "locktest", "s")[0].pid]
    shims = [pid for pid, _ in procs.marked(str(runner.jobs_dir)).items()
             if Path(f"/proc/{pid}/comm").read_text().strip().startswith("pulumi-language")]
    job.cancel()
    # The CLI interrupts its language host's process group: the shim ends, the program (ignoring SIGINT) keeps
    # the CLI waiting; it dies there, before it unlocks.
    _until(lambda: not set(shims) & set(procs.marked(str(runner.jobs_dir))), "the cancel to reach the language host")
    os.kill(cli, signal.SIGKILL)
    assert job.wait(60) == {"cancelled": True, "error": "CommandError"}
    assert pulumi_lock.locks_of(url, "locktest", "s") == []
    (project / "__main__.py").write_text("")
    done = _up(pulumi_bin, project, {**os.environ, **env})
    output = done.communicate(timeout=120)[0]
    assert done.returncode == 0, output
