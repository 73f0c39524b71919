"""docs/team-backend.md as written: its server setup and login blocks (run by the `team_backend` fixture,
tests/pgserver.py, on a real server) give a role with the least rights that work, Pulumi logs in with it,
`pulumi` by hand works on it, and the page's command that shows who holds a stack shows it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.pgserver import DOC, ROLE, TeamBackend

REPO = Path(__file__).resolve().parent.parent


def test_the_setup_gives_a_role_that_can_use_its_schema_and_nothing_else(team_backend: TeamBackend) -> None:
    # The login the page shows worked, and says where the state is, without a password.
    assert re.search(r"Backend URL: postgres://pulumi_state@127\.0\.0\.1:\d+/pulumi", team_backend.login_output)
    assert team_backend.password not in team_backend.login_output
    with team_backend.admin() as admin:
        role = admin.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolbypassrls FROM pg_roles "
                             "WHERE rolname = %s", (ROLE,)).fetchone()
        assert role == (False, False, False, False, False)
        # Pulumi made its table at the first login, in the role's schema, owned by the role.
        assert admin.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'pulumi' AND tablename = "
                             "'pulumi_state'").fetchone() == (ROLE,)
    with psycopg.connect(team_backend.url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        for refused in ("CREATE TABLE public.t (x int)", "CREATE DATABASE other", "CREATE SCHEMA other",
                        "CREATE ROLE other"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(refused)
    other = team_backend.url.replace("/pulumi?", "/postgres?").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(other, autocommit=True) as conn:  # the server's own database: nothing there to write
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE t (x int)")


def test_pulumi_by_hand_and_the_holders_query_of_the_page(team_backend: TeamBackend, pulumi_bin: Path,
                                                          tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "PG"))}
    env.update(team_backend.login_env)
    env.update({"PATH": f"{pulumi_bin}{os.pathsep}{env.get('PATH', '')}", "PULUMI_HOME": str(tmp_path / "home"),
                "PULUMI_SKIP_UPDATE_CHECK": "true"})
    login = subprocess.run(["pulumi", "login", f"postgres://{ROLE}@127.0.0.1:{team_backend.server.port}/pulumi"],
                           env=env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert login.returncode == 0, login.stderr
    # A project's stacks, as a user lists them by hand. Not `--all`: the CLI's postgres driver deadlocks listing
    # every stack of a backend that holds a few dozen (docs/team-backend.md, "Known problems"), as this session's
    # backend does after the e2e tests.
    (tmp_path / "Pulumi.yaml").write_text("name: by-hand\nruntime: python\n")
    listed = subprocess.run(["pulumi", "stack", "ls", "--json"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)  # never waits on a prompt
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []

    # While an entry point holds a stack, the page's query names it.
    [query] = [line.strip() for line in DOC.read_text().splitlines() if line.startswith("    psql -c ")]
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom enginejob.backend_lock import stack_lock\n"
                               "with stack_lock(sys.argv[1], 'artifact-slice', 'org1', title='an up of org1', wait=0):\n"
                               "    print('held', flush=True); sys.stdin.read()", team_backend.url],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        psql_env = {**env, "PGHOST": "127.0.0.1", "PGPORT": str(team_backend.server.port), "PGUSER": ROLE,
                    "PGDATABASE": "pulumi"}
        shown = subprocess.run(["bash", "-c", query], env=psql_env, capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert "artifact-slice/org1" in shown.stdout and "an up of org1 by " in shown.stdout, shown.stdout
        assert str(holder.pid) in shown.stdout
    finally:
        holder.kill()
        holder.wait()
