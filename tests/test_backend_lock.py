"""enginejob/backend_lock.py on a real PostgreSQL server (the team backend docs/team-backend.md sets up) and on a file
backend: a second caller waits for the holder of its stack and is told who that is; the wait is bounded and
ends in a sentence naming the holder; a killed holder's lock is free at once; other stacks, and other
spellings of the same backend, behave as they should. Holders are separate processes, as they are in use."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from enginejob import Busy, Holder
from enginejob.backend_lock import LockUnavailable, WaitStopped, advisory_key, libpq_conninfo, stack_lock
from tests.pgserver import DATABASE, ROLE, TeamBackend

REPO = Path(__file__).resolve().parent.parent
HOLDER = """
import sys
from enginejob.backend_lock import stack_lock
with stack_lock(sys.argv[1], "proj", sys.argv[2], title=sys.argv[3], wait=0):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it (or kills this process)
"""


def _holder(url: str, stack: str, title: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, stack, title], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture(params=["postgres", "file"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/backend"
    team: TeamBackend = request.getfixturevalue("team_backend")
    return team.url


def test_second_caller_waits_is_told_who_holds_then_runs(backend: str) -> None:
    holder = _holder(backend, "org1", "`pulumi up` of org1 (the ephemeral cycle)")
    told: list[Holder | None] = []
    try:
        with pytest.raises(Busy) as busy:
            with stack_lock(backend, "proj", "org1", title="a second up", wait=0.3, on_wait=told.append):
                pass
        # The bounded wait ends in a sentence naming the holder: what, who, which process, since when.
        message = str(busy.value)
        assert "`pulumi up` of org1 (the ephemeral cycle) by " in message and f"process {holder.pid}" in message
        assert "since" in message and "UTC" in message, message
        assert told and told[0] is not None and told[0].pid == holder.pid

        # Waiting longer: it gets the stack as soon as the holder lets go.
        told.clear()
        assert holder.stdin is not None
        timer = time.monotonic()
        threading.Timer(0.5, holder.stdin.close).start()
        with stack_lock(backend, "proj", "org1", title="a second up", wait=20, on_wait=told.append) as held:
            waited = time.monotonic() - timer
            assert held.pid == os.getpid() and "a second up by " in held.title
        assert 0.4 < waited < 5, waited
        assert told and told[0] is not None and told[0].pid == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_lock(backend: str) -> None:
    holder = _holder(backend, "org1", "a run about to be killed")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with stack_lock(backend, "proj", "org1", title="the rerun", wait=10, on_wait=lambda h: pytest.fail(f"waited for {h}")):
        pass
    assert time.monotonic() - started < 2


def test_other_stacks_do_not_wait_and_a_stop_ends_the_wait(backend: str) -> None:
    holder = _holder(backend, "org1", "an up of org1")
    try:
        with stack_lock(backend, "proj", "org2", title="an up of org2", wait=0):
            pass
        with stack_lock(backend, "other-project", "org1", title="another project's org1", wait=0):
            pass
        with pytest.raises(WaitStopped):
            with stack_lock(backend, "proj", "org1", title="a cancelled job", wait=60, stop=lambda: True):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_one_stack_has_one_key_however_the_backend_is_spelled() -> None:
    """Advisory locks are per database: the key is the state table, project and stack, not how the server is
    reached (one server has many names; credentials differ between operators)."""
    spellings = ["postgres://alice:secret@db.internal:5432/pulumi", "postgresql://bob@10.0.0.5/pulumi?sslmode=verify-full",
                 "postgres:///pulumi?table=pulumi_state"]
    keys = {advisory_key(libpq_conninfo(url)[1], "artifact-slice", "org1") for url in spellings}
    assert len(keys) == 1
    assert advisory_key("pulumi_state", "artifact-slice", "org2") not in keys
    assert advisory_key(libpq_conninfo("postgres://h/pulumi?table=staging")[1], "artifact-slice", "org1") not in keys
    conninfo, table = libpq_conninfo("postgres://u@h:5/db?table=staging&sslmode=require")
    assert (conninfo, table) == ("postgresql://u@h:5/db?sslmode=require", "staging")  # libpq never sees `table`


def test_control_plane_apply_waits_then_says_who_holds_the_stack(team_backend: TeamBackend, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`infra_provision_org` apply takes the stack's lock from the operator's backend (PULUMI_BACKEND_URL) and
    the project of its work dir; a holder that keeps it past the control plane's wait is named in the
    tool's error, not a traceback."""
    from controlplane import provision
    from controlplane.errors import ControlPlaneError

    (tmp_path / "Pulumi.yaml").write_text("name: proj\nruntime: python\n")
    monkeypatch.setenv("PULUMI_BACKEND_URL", team_backend.url)
    monkeypatch.setattr(provision, "STACK_LOCK_WAIT", 0.3)
    provisioner = provision.Provisioner(allowed_stacks={"org1"}, work_dir=tmp_path)
    holder = _holder(team_backend.url, "org1", "the deploy job's `pulumi up` of org1")
    try:
        with pytest.raises(ControlPlaneError) as refused:
            with provisioner._stack_lock("org1"):
                pass
        assert "the deploy job's `pulumi up` of org1 by " in str(refused.value)
        assert f"process {holder.pid}" in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
    with provisioner._stack_lock("org1"):  # free again
        pass


def test_an_unreachable_database_is_named_without_the_password(team_backend: TeamBackend) -> None:
    wrong = team_backend.server.url(ROLE, "not-the-password", DATABASE)
    with pytest.raises(LockUnavailable) as refused:
        with stack_lock(wrong, "proj", "org1", title="an up", wait=0):
            pass
    message = str(refused.value)
    assert "password authentication failed for user \"pulumi_state\"" in message, message
    assert "not-the-password" not in message and team_backend.password not in message


@pytest.mark.parametrize("value", ["ten", "-5", "nan"])
def test_a_wait_setting_that_is_no_number_of_seconds_is_named(value: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTIFACT_STACK_LOCK_WAIT", value)
    with pytest.raises(LockUnavailable, match=r"ARTIFACT_STACK_LOCK_WAIT must be a number of seconds, 0 or more "
                                              rf"\(got '{re.escape(value)}'\); unset it for the default, 900"):
        with stack_lock(f"file://{tmp_path}", "proj", "org1", title="an up"):
            pass
    monkeypatch.setenv("ARTIFACT_STACK_LOCK_WAIT", "2.5")
    with stack_lock(f"file://{tmp_path}", "proj", "org1", title="an up"):
        pass
