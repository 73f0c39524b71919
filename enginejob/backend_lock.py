"""One stack, one update at a time, across processes and machines: the lock every entry point of the project
takes around an engine operation that writes a stack (up, refresh, destroy, stack rm, cancel), before Pulumi
takes its own.

Pulumi's own stack lock on a DIY backend (file://, postgres://, s3://...) is not a database lock: it lists
the stack's lock entries, writes its own and lists again, and gives up when it sees another. Two updates
started together can therefore both give up (each saw the other's entry). This lock sits in front of it
and queues instead:

- ``postgres://`` (and ``postgresql://``): a session-level PostgreSQL advisory lock in the backend's own
  database, keyed by the state table, the project and the stack, waited for within ``wait`` seconds. The
  server releases it when the holder's connection ends, so a killed holder never leaves it behind. Who
  holds it (what, user@host, process, since when) is kept in the small table ``artifact_stack_locks`` beside
  Pulumi's table (made on first use, with the same right Pulumi's own table needs) and in the holder's
  ``application_name`` (`pg_stat_activity`).
- ``file://``: enginejob's flock, in ``<backend dir>/.artifact-slices/locks`` (beside the state it guards).
- any other backend (s3://, Pulumi Cloud): enginejob's flock in this machine's state dir (one machine's
  callers queue; across machines Pulumi's own lock is all there is).

Every kind raises ``enginejob.Busy`` (with ``.holder``) when the wait runs out, and calls ``on_wait`` once with
the holder when it has to wait at all. psycopg is imported only for a postgres:// backend.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .locks import Busy, Holder
from .runner import Runner

# How long an entry point waits for another update of the same stack by default: a slice's fresh `up` takes
# a few minutes on Fly, so a CI job queued behind one waits that long. ARTIFACT_STACK_LOCK_WAIT overrides it.
DEFAULT_WAIT_SECONDS = 900.0
HOLDERS_TABLE = "artifact_stack_locks"
# The advisory lock under which the holders' table is made (several first users at once would race).
_SETUP_KEY = int.from_bytes(hashlib.sha256(b"artifact-slices holders table").digest()[:8], "big", signed=True)
# libpq's environment, for the values a caller passes in its engine environment rather than in os.environ.
_LIBPQ_ENV = {"PGHOST": "host", "PGHOSTADDR": "hostaddr", "PGPORT": "port", "PGDATABASE": "dbname",
              "PGUSER": "user", "PGPASSWORD": "password", "PGPASSFILE": "passfile", "PGSSLMODE": "sslmode",
              "PGSSLROOTCERT": "sslrootcert", "PGSSLCERT": "sslcert", "PGSSLKEY": "sslkey",
              "PGCONNECT_TIMEOUT": "connect_timeout", "PGOPTIONS": "options"}
_APP_PREFIX = "artifact-slices: "
_tables_ready: set[str] = set()
_tables_lock = threading.Lock()


class LockUnavailable(Exception):
    """The stack lock could not be taken for another reason than a holder: the backend's database is out of
    reach or refuses the role (the message says which, never a password)."""


class WaitStopped(Exception):
    """``stop()`` said to stop waiting (a signal asked the caller to stop)."""


def default_wait() -> float:
    """ARTIFACT_STACK_LOCK_WAIT (seconds), else DEFAULT_WAIT_SECONDS; ``LockUnavailable`` when it isn't a number."""
    value = os.environ.get("ARTIFACT_STACK_LOCK_WAIT", "").strip()
    if not value:
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise LockUnavailable(f"ARTIFACT_STACK_LOCK_WAIT must be a number of seconds, 0 or more (got {value!r}); "
                              f"unset it for the default, {DEFAULT_WAIT_SECONDS:.0f}")
    return seconds


def who() -> str:
    """``user@host``, as Pulumi's own lock names its holder."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def backend_url_of(env: Mapping[str, str] | None = None, pulumi_home: str | Path | None = None) -> str:
    """The backend the engine will use: PULUMI_BACKEND_URL of ``env`` or of this process, else the one
    `pulumi login` recorded in ``<PULUMI_HOME>/credentials.json``; "" when none is known (Pulumi Cloud)."""
    env = env or {}
    url = env.get("PULUMI_BACKEND_URL") or os.environ.get("PULUMI_BACKEND_URL") or ""
    if url:
        return url
    home = Path(pulumi_home or env.get("PULUMI_HOME") or os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    try:
        return str(json.loads((home / "credentials.json").read_text()).get("current") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def project_of(work_dir: str | Path) -> str:
    """The project's name, from `Pulumi.yaml` in ``work_dir``."""
    import yaml

    document = yaml.safe_load((Path(work_dir) / "Pulumi.yaml").read_text()) or {}
    return str(document.get("name") or "")


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("postgres", "postgresql") and "://" in url


def stack_lock(backend_url: str, project: str, stack: str, *, title: str, wait: float | None = None,
               on_wait: Callable[[Holder | None], None] | None = None, stop: Callable[[], bool] | None = None,
               env: Mapping[str, str] | None = None,
               state_dir: Path | None = None) -> contextlib.AbstractContextManager[Holder]:
    """A context manager that holds ``stack`` of ``project`` on ``backend_url`` for the block.

    ``title`` says what holds it ("`pulumi up` of org1 (ephemeral cycle)"; user@host is added). ``wait``: how
    long to wait for another holder (default ``default_wait()``) before ``enginejob.Busy``. ``on_wait(holder)``
    is called once when the lock is taken by someone else. ``stop()`` is polled while waiting: true raises
    ``WaitStopped``. ``env``: the engine's environment (libpq's PG* variables there count as this process's).
    ``state_dir``: enginejob's state dir for backends that are neither file:// nor postgres://."""
    wait = default_wait() if wait is None else wait
    title = f"{title} by {who()}"
    stack = stack.rsplit("/", 1)[-1]  # "organization/<project>/<stack>" or "<stack>": the DIY backend's one org
    if is_postgres(backend_url):
        return _advisory(backend_url, project, stack, title=title, wait=wait, on_wait=on_wait, stop=stop, env=env or {})
    if backend_url.startswith("file://"):
        directory = Path(unquote(urlsplit(backend_url).path) or "/").expanduser()
        lock_state = directory / ".artifact-slices"
        key = f"stack/file://{directory.resolve()}/{project}/{stack}"
    else:
        lock_state = state_dir
        key = f"stack/{backend_url or 'pulumi-cloud'}/{project}/{stack}"
    return _flock(Runner(lock_state), key, title=title, wait=wait, on_wait=on_wait, stop=stop)


# -- flock (enginejob) -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _flock(runner: Runner, key: str, *, title: str, wait: float, on_wait: Callable[[Holder | None], None] | None,
           stop: Callable[[], bool] | None) -> Iterator[Holder]:
    started = time.monotonic()
    told = False
    with contextlib.ExitStack() as held:
        while True:
            # In slices of a second, so that ``stop`` is heard; the first try does not wait, to tell the caller.
            left = wait - (time.monotonic() - started)
            try:
                held.enter_context(runner.hold(key, title, wait=max(0.0, min(1.0, left)) if told else 0.0))
                break
            except Busy as busy:
                if not told:
                    told = True
                    if on_wait is not None:
                        on_wait(busy.holder)
                if time.monotonic() - started >= wait:
                    raise Busy(busy.key, busy.holder, time.monotonic() - started) from None
                if stop is not None and stop():
                    raise WaitStopped(title) from None
        yield Holder(title, os.getpid(), _now())


# -- PostgreSQL advisory lock ----------------------------------------------------------------------------------

def libpq_conninfo(backend_url: str) -> tuple[str, str]:
    """The URL libpq takes (Pulumi's own ``table`` parameter removed; ``postgresql://`` as libpq spells it),
    and the state table's name."""
    parts = urlsplit(backend_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    table = next((value for name, value in query if name == "table"), "") or "pulumi_state"
    query = [(name, value) for name, value in query if name != "table"]
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), "")), table


def advisory_key(table: str, project: str, stack: str) -> int:
    """The stack's advisory lock key (a signed 64-bit integer). Advisory locks are per database, so the
    database need not be part of it; the host is not (one server has many names)."""
    digest = hashlib.sha256(f"artifact-slices stack lock\0{table}\0{project}\0{stack}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connect(backend_url: str, env: Mapping[str, str] | None = None, *, application_name: str = "artifact-slices") -> Any:
    """A connection to the backend's database (autocommit), with libpq's PG* variables of ``env`` applied."""
    import psycopg

    conninfo, _ = libpq_conninfo(backend_url)
    extra = {param: env[name] for name, param in _LIBPQ_ENV.items() if env and env.get(name)}
    extra.setdefault("connect_timeout", "10")
    try:
        # A holder whose machine vanished is noticed within about a minute, and its lock released by the server.
        return psycopg.connect(conninfo, autocommit=True, application_name=application_name[:63], keepalives="1",
                               keepalives_idle="20", keepalives_interval="5", keepalives_count="4", **extra)
    except psycopg.OperationalError as exc:  # libpq's words name host, port, role and cause; never the password
        cause = " ".join(str(exc).split())[:400]
        raise LockUnavailable(f"could not connect to the backend's database for the stack lock: {cause}; check the "
                              "backend URL and libpq's variables (PGPASSWORD, PGSSLMODE, ...), as for `pulumi login`") \
            from None


def _ensure_holders_table(conn: Any, conninfo: str) -> None:
    with _tables_lock:
        if conninfo in _tables_ready:
            return
    # Made when missing only (CREATE ... IF NOT EXISTS would need the right to create even when it exists: an
    # administrator may have made it for a role without that right).
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_KEY,))
        if conn.execute("SELECT to_regclass(%s) IS NULL", (HOLDERS_TABLE,)).fetchone()[0]:
            conn.execute(f"""CREATE TABLE {HOLDERS_TABLE} (
                lock_key bigint PRIMARY KEY, stack text NOT NULL, title text NOT NULL, pid integer NOT NULL,
                since timestamptz NOT NULL DEFAULT now(), backend_pid integer NOT NULL)""")
    with _tables_lock:
        _tables_ready.add(conninfo)


def holder_of(conn: Any, key: int, *, settle: float = 0.5) -> Holder | None:
    """Who holds ``key`` now: its row in the holders' table, if the connection that wrote it holds the lock
    still; else (a holder that took the lock a moment ago and has not written its row within ``settle``
    seconds, or one that isn't ours) what `pg_stat_activity` says of the connection that holds it; None when
    it is free."""
    deadline = time.monotonic() + settle
    while True:
        row = conn.execute(
            f"""SELECT h.title, h.pid, h.since FROM {HOLDERS_TABLE} h JOIN pg_locks l
                  ON l.locktype = 'advisory' AND l.granted AND l.pid = h.backend_pid AND l.objsubid = 1
                 AND l.classid = ((h.lock_key >> 32) & 4294967295)::oid
                 AND l.objid = (h.lock_key & 4294967295)::oid
                 WHERE h.lock_key = %s""", (key,)).fetchone()
        if row:
            return Holder(str(row[0]), int(row[1]), row[2].astimezone(timezone.utc).isoformat(timespec="seconds"))
        row = conn.execute(
            """SELECT coalesce(a.application_name, ''), l.pid, a.backend_start FROM pg_locks l
                 LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                  AND l.classid = ((%s::bigint >> 32) & 4294967295)::oid AND l.objid = (%s::bigint & 4294967295)::oid
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
            (key, key)).fetchone()
        if row is None:
            return None
        if time.monotonic() >= deadline:
            since = row[2].astimezone(timezone.utc).isoformat(timespec="seconds") if row[2] else ""
            name = str(row[0]).removeprefix(_APP_PREFIX) or "a database session"
            return Holder(f"{name} (database session {row[1]})", 0, since)
        time.sleep(0.05)


@contextlib.contextmanager
def _advisory(backend_url: str, project: str, stack: str, *, title: str, wait: float,
              on_wait: Callable[[Holder | None], None] | None, stop: Callable[[], bool] | None,
              env: Mapping[str, str]) -> Iterator[Holder]:
    import psycopg

    conninfo, table = libpq_conninfo(backend_url)
    key = advisory_key(table, project, stack)
    readable = f"{project}/{stack}"
    conn = connect(backend_url, env, application_name=f"{_APP_PREFIX}{title}")
    try:
        _ensure_holders_table(conn, conninfo)
        started = time.monotonic()
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            holder = holder_of(conn, key)
            if on_wait is not None:
                on_wait(holder)
            while True:
                left = wait - (time.monotonic() - started)
                if left <= 0:
                    raise Busy(readable, holder_of(conn, key) or holder, time.monotonic() - started)
                if stop is not None and stop():
                    raise WaitStopped(title)
                # Waiting in the server (queued, woken the moment the holder lets go), in slices of at most a
                # second so that ``stop`` is heard.
                conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(min(left, 1.0) * 1000) or 1}ms",))
                try:
                    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                    break
                except psycopg.errors.LockNotAvailable:
                    continue
            conn.execute("SELECT set_config('lock_timeout', '0', false)")
        since = _now()
        conn.execute(
            f"""INSERT INTO {HOLDERS_TABLE} (lock_key, stack, title, pid, since, backend_pid)
                VALUES (%s, %s, %s, %s, %s, pg_backend_pid())
                ON CONFLICT (lock_key) DO UPDATE SET stack = EXCLUDED.stack, title = EXCLUDED.title,
                    pid = EXCLUDED.pid, since = EXCLUDED.since, backend_pid = EXCLUDED.backend_pid""",
            (key, readable, title, os.getpid(), since))
        try:
            yield Holder(title, os.getpid(), since)
        finally:
            with contextlib.suppress(psycopg.Error):  # a lost connection released the lock already
                conn.execute(f"DELETE FROM {HOLDERS_TABLE} WHERE lock_key = %s AND backend_pid = pg_backend_pid()",
                             (key,))
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        conn.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
