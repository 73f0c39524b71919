"""enginejob: job processes, their key locks and their death, with real processes and real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from enginejob import Busy, JobFailed, Runner
from enginejob import procs

ENTRIES = str(Path(__file__).resolve().parent)
REPO = Path(__file__).resolve().parents[2]


def _until(condition, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path / "state")


def test_job_streams_events_in_order_returns_its_value_and_leaves_nothing(runner: Runner) -> None:
    job = runner.start("entries:echo", {"n": 5, "secret": "s3cr3t-value"}, kind="test", title="an echo",
                       key="k/echo", pythonpath=[ENTRIES])
    events = list(job.events())
    assert events == [{"i": i} for i in range(5)]
    assert job.wait(10) == {"sum": 10, "secret_seen": "s3", "dir_private": "0o700"}
    assert list(runner.jobs_dir.iterdir()) == []
    assert runner.holder("k/echo") is None
    # The payload went through the pipe: not in the job process's argv or environment.
    assert "s3cr3t" not in " ".join(job.process.args)


def test_an_entry_that_raises_is_reported_in_its_own_words(runner: Runner) -> None:
    job = runner.start("entries:fail", None, kind="test", title="a failure", pythonpath=[ENTRIES])
    with pytest.raises(JobFailed, match="the app name is taken") as caught:
        job.wait(10)
    assert caught.value.kind == "ValueError"


def test_a_second_job_of_the_same_key_is_busy_and_says_who_holds_it(runner: Runner, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    first = runner.start("entries:spawn_and_wait", {"flag": str(flag)}, kind="test", title="a deploy of 'twin3'",
                         key="selfhosted/x/twin3", pythonpath=[ENTRIES])
    assert next(first.events()) == {"ready": True}
    with pytest.raises(Busy) as caught:
        runner.start("entries:echo", {"n": 1}, kind="test", title="another", key="selfhosted/x/twin3",
                     pythonpath=[ENTRIES])
    assert caught.value.holder is not None and caught.value.holder.pid == first.pid  # the job process holds it
    assert str(caught.value).startswith("a deploy of 'twin3' is already running (since ")
    # A caller that may wait gets it once the first job ends.
    threading.Timer(0.5, first.cancel).start()
    second = runner.start("entries:echo", {"n": 1}, kind="test", title="another", key="selfhosted/x/twin3",
                          wait=20, pythonpath=[ENTRIES])
    assert first.wait(10) == "rolled back" and flag.read_text() == "cancelled parent_gone=False"
    assert second.wait(10)["sum"] == 0


def test_threads_and_processes_exclude_each_other(tmp_path: Path) -> None:
    runner = Runner(tmp_path / "state")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from enginejob import Runner
        with Runner({str(tmp_path / 'state')!r}).hold("stack/a", "an update of a"):
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(Busy, match="an update of a is already running"):
        with runner.hold("stack/a", "mine"):
            pass
    assert holder.stdin is not None
    holder.stdin.close()
    with runner.hold("stack/a", "mine", wait=10):  # waits its turn
        results: list[str] = []

        def other() -> None:
            try:
                with runner.hold("stack/a", "thread"):
                    results.append("got it")
            except Busy:
                results.append("busy")
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert results == ["busy"]
    holder.wait(5)


def test_cancel_interrupts_the_running_engine_once_and_lets_the_rollback_run(runner: Runner, tmp_path: Path) -> None:
    fake = tmp_path / "pulumi-fake"  # the job interrupts its children whose name starts with "pulumi"
    shutil.copy("/bin/sleep", fake)
    job = runner.start("entries:engine_then_rollback", {"fake_pulumi": str(fake)}, kind="test", title="t",
                       pythonpath=[ENTRIES])
    assert next(job.events()) == {"ready": True}
    time.sleep(0.3)
    job.cancel()
    assert job.wait(20) == {"first": -signal.SIGINT, "cancelled": True, "second": 0, "second_cancelled": False}


def test_the_parent_killed_with_sigkill_the_job_acts_as_cancelled_and_nothing_is_left(tmp_path: Path) -> None:
    state, flag = tmp_path / "state", tmp_path / "flag"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from enginejob import Runner
        job = Runner({str(state)!r}).start("entries:spawn_and_wait", {{"flag": {str(flag)!r}}}, kind="test",
                                          title="a deploy of 'x'", key="k/x", pythonpath=[{ENTRIES!r}])
        for event in job.events():
            print(event, flush=True)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert parent.stdout is not None and "ready" in parent.stdout.readline()
    runner = Runner(state)
    [job_dir] = list(runner.jobs_dir.iterdir())
    assert len(procs.marked(str(job_dir))) == 2  # the job process and the process it left
    parent.kill()
    parent.wait()
    _until(lambda: flag.exists(), what="the job to see its parent gone")
    assert flag.read_text() == "cancelled parent_gone=True"
    _until(lambda: not procs.marked(str(job_dir)), what="the job's processes to end")
    assert not job_dir.exists() and runner.holder("k/x") is None
    assert runner.sweep() == []


def test_a_job_killed_outright_is_swept_at_the_next_start(runner: Runner, tmp_path: Path) -> None:
    job = runner.start("entries:spawn_and_wait", {"flag": str(tmp_path / "flag")}, kind="selfhosted-deploy",
                       title="a deploy of 'x'", key="k/x", pythonpath=[ENTRIES])
    assert next(job.events()) == {"ready": True}
    [job_dir] = list(runner.jobs_dir.iterdir())
    [leftover] = [p for p in procs.marked(str(job_dir)) if p != job.pid]
    os.kill(job.pid, signal.SIGKILL)
    with pytest.raises(Exception, match="without an outcome"):
        job.wait(10)
    _until(lambda: procs.marked(str(job_dir)) == {leftover: str(job_dir)},  # left to init, still marked
           what="only the leftover to be marked")
    assert runner.holder("k/x") is None  # the kernel released the lock with the process
    [swept] = runner.sweep()
    assert (swept.kind, swept.title, swept.notes) == ("selfhosted-deploy", "a deploy of 'x'",
                                                      {"apps": ["x-relay", "x-vm"]})
    assert "may have left x-relay, x-vm" in swept.sentence()
    assert leftover in swept.killed and not job_dir.exists()
    _until(lambda: not procs.marked(str(runner.jobs_dir)), what="the leftover to end")
    assert runner.sweep() == []


def test_a_sweep_leaves_live_jobs_of_other_processes_alone(runner: Runner, tmp_path: Path) -> None:
    job = runner.start("entries:spawn_and_wait", {"flag": str(tmp_path / "flag")}, kind="t", title="t",
                       pythonpath=[ENTRIES])
    assert next(job.events()) == {"ready": True}
    assert Runner(runner.state_dir).sweep() == []
    assert len(procs.marked(str(runner.jobs_dir))) == 2
    job.cancel()
    assert job.wait(10) == "rolled back"
    info = json.dumps([p.name for p in runner.jobs_dir.iterdir()])
    assert info == "[]"


@pytest.mark.parametrize("ending", ["exit", "sigterm", "sigkill"])
def test_a_private_directory_lives_as_long_as_its_process(ending: str, tmp_path: Path) -> None:
    """The control plane's saved plans: gone when the server exits, and after any death, by the next sweep."""
    state = tmp_path / "state"
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from enginejob import Runner
        runner = Runner({str(state)!r})
        mine = runner.private_dir()
        assert runner.private_dir() == mine  # one per process
        (mine / "plan.json").write_text("{{}}")
        print(mine, flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert owner.stdout is not None and owner.stdin is not None
    directory = Path(owner.stdout.readline().strip())
    assert (directory / "plan.json").exists() and directory.stat().st_mode & 0o777 == 0o700
    assert Runner(state).sweep() == [] and directory.exists()  # alive: another process's sweep leaves it
    if ending == "exit":
        owner.stdin.close()
        owner.wait(10)
        assert not directory.exists()
        return
    owner.send_signal(signal.SIGTERM if ending == "sigterm" else signal.SIGKILL)
    owner.wait(10)
    assert directory.exists()  # no atexit ran
    assert Runner(state).sweep() == [] and not directory.exists()
