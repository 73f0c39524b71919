"""A real PostgreSQL server for the tests: Debian's `postgresql` package (scripts/ensure-postgresql installs it
when missing), a cluster made with `initdb` in a temporary directory, listening on a free loopback port and on
a Unix socket in that directory, stopped and removed at the end.

The cluster's superuser (`postgres`) connects through the socket without a password (the administrator's
seat in docs/team-backend.md); everyone else connects over TCP with a password (scram-sha-256), as a team's
operators and CI runners do. PostgreSQL refuses to run as root: as root, the server runs as the `postgres`
system user the package creates.

Durability is off (fsync, synchronous commit): the data lives for one test session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"


class PostgresUnavailable(Exception):
    """The server's programs are missing or the server did not start; the message says what to do."""


def bin_dir() -> Path:
    """The directory of initdb/pg_ctl/postgres: Debian keeps them out of PATH, under /usr/lib/postgresql/<major>/bin
    (the newest installed), else `pg_config --bindir`, else PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        directory = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if directory and (Path(directory) / "initdb").is_file():
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresUnavailable("PostgreSQL's server programs (initdb, pg_ctl) are missing: run scripts/ensure-postgresql "
                              "(apt-get install postgresql), which scripts/test runs")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``with PostgresServer() as pg:`` a running server; ``pg.admin_env()`` is the environment psql and libpq
    clients need to act as its superuser, ``pg.url(user, password, database)`` a TCP URL for a login role."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="artifact-pg."))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.port = 0
        self._run_as: str | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, and there is no `postgres` system user to run the server "
                                          "as (Debian's postgresql package creates it)") from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._run_as = "postgres"
        self.root.chmod(0o755)  # the socket is in it; clients of every user reach it

    # -- lifecycle ----------------------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                              user=self._run_as, cwd=self.root, stdin=subprocess.DEVNULL,
                              env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"})

    def start(self) -> PostgresServer:
        done = self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8", "--no-sync",
                         "--auth-local=trust", "--auth-host=scram-sha-256")
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stderr.strip()[-1500:]}")
        for attempt in range(3):  # a free port can be taken between the look and the bind
            self.port = free_port()
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                           f"unix_socket_directories = '{self.socket_dir}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                           "max_connections = 200\nshared_buffers = 32MB\n")
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                             "start", timeout=90)
            if done.returncode == 0:
                return self
            if attempt == 2 or "could not bind" not in self.log():
                raise PostgresUnavailable(f"the server did not start: {done.stderr.strip()[-500:]}\n{self.log()[-2000:]}")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        path = self.root / "server.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    # -- clients ------------------------------------------------------------------------------------------

    def admin_env(self) -> dict[str, str]:
        """libpq's variables for the superuser over the socket (what `psql` of the docs' administrator uses)."""
        return {"PGHOST": str(self.socket_dir), "PGPORT": str(self.port), "PGUSER": SUPERUSER,
                "PGDATABASE": "postgres"}

    def admin(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=database,
                               autocommit=True)

    def url(self, user: str, password: str | None, database: str, **params: str) -> str:
        from urllib.parse import quote, urlencode

        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
        query = urlencode({"sslmode": "disable", **params})
        return f"postgres://{auth}@127.0.0.1:{self.port}/{quote(database, safe='')}?{query}"


# -- the team setup of docs/team-backend.md, run as written ------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "team-backend.md"
SERVER_SECTION, LOGIN_SECTION = "Setting up the server", "Logging in"
ROLE, DATABASE = "pulumi_state", "pulumi"
# What a reader of the login block fills in: the server's name, its port, and TLS (the test server has none).
PLACEHOLDERS = {"db.example.internal:5432": "{host}:{port}", "verify-full": "disable"}


def doc_block(heading: str, page: Path = DOC) -> str:
    """The first ```sh block under ``heading``, as written (heredocs and all)."""
    import re

    text = page.read_text()
    match = re.search(rf"^#+ {re.escape(heading)}\s*$", text, flags=re.M)
    if not match:
        raise AssertionError(f"{page.name} has no section {heading!r}")
    block = re.search(r"```sh\n(.*?)```", text[match.end():], flags=re.S)
    if not block:
        raise AssertionError(f"{page.name} section {heading!r} has no ```sh block")
    return block.group(1)


class TeamBackend:
    """The database, schema and role docs/team-backend.md sets up, on ``server``, made by its own commands.
    ``url`` is a postgres:// backend URL for the role (password included: for tests only, the docs keep it
    out of URLs); ``login_env`` what the docs' login block exports."""

    def __init__(self, server: PostgresServer, password: str, login_env: dict[str, str]) -> None:
        self.server, self.password, self.login_env = server, password, login_env
        self.url = server.url(ROLE, password, DATABASE)

    def admin(self) -> Any:
        return self.server.admin(DATABASE)

    def rows(self, table: str = "pulumi_state") -> dict[str, str]:
        """The state table's rows, key to stored text (Pulumi keeps each file base64-encoded in JSON)."""
        with self.admin() as conn:
            return {k: str(v) for k, v in conn.execute(f"SELECT key, data::text FROM pulumi.{table}").fetchall()}

    def stored(self, table: str = "pulumi_state") -> str:
        """Every row's key and text as stored, and each file in it decoded (Pulumi keeps a file base64-encoded
        in a JSON object; gzip left alone): what to grep for plaintext secrets."""
        import base64
        import json

        texts = []
        for key, text in self.rows(table).items():
            texts += [key, text]
            try:
                texts.append(base64.b64decode(json.loads(text)["data"]).decode("utf-8", errors="replace"))
            except (ValueError, KeyError, TypeError):
                pass
        return "\n".join(texts)


def run_doc_block(heading: str, env: dict[str, str], *, fill: dict[str, str] | None = None,
                  cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    script = doc_block(heading)
    for placeholder, value in (fill or {}).items():
        if placeholder not in script:
            raise AssertionError(f"docs/team-backend.md, {heading!r}: no {placeholder!r} to fill in:\n{script}")
        script = script.replace(placeholder, value)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def set_up_team_backend(server: PostgresServer, pulumi_home: Path, base_env: dict[str, str]) -> TeamBackend:
    """The docs' two blocks: the administrator's (psql through the socket, as the superuser), then the
    operator's login (the role over TCP, with its password), in a PULUMI_HOME of its own."""
    import secrets

    password = "pw' $x " + secrets.token_urlsafe(18)  # quotes, a dollar and a space: the commands quote it right
    clean = {k: v for k, v in base_env.items() if not k.startswith(("PG", "PULUMI_"))}
    admin = run_doc_block(SERVER_SECTION, {**clean, **server.admin_env(), "PULUMI_DB_PASSWORD": password})
    if admin.returncode != 0:
        raise AssertionError(f"the server setup of docs/team-backend.md failed:\n{admin.stdout}\n{admin.stderr}")
    env = {**clean, "PULUMI_HOME": str(pulumi_home), "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PULUMI_DB_PASSWORD": password}
    fill = {k: v.format(host="127.0.0.1", port=server.port) for k, v in PLACEHOLDERS.items()}
    login = run_doc_block(LOGIN_SECTION, env, fill=fill)
    if login.returncode != 0:
        raise AssertionError(f"the login of docs/team-backend.md failed:\n{login.stdout}\n{login.stderr}")
    login_env = {"PGSSLMODE": "disable", "PGPASSWORD": password}
    backend = TeamBackend(server, password, login_env)
    backend.login_output = login.stdout + login.stderr  # type: ignore[attr-defined]
    return backend
