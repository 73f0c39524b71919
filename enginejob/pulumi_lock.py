"""Pulumi's own stack lock on a DIY backend: who holds it, and releasing the one an interrupted engine left.

Why a job needs it: one SIGINT to `pulumi up` cancels the update only while the CLI listens for it, which is
from the start of the update proper to the end of its display (pkg/backend/cancellation_scope.go: the scope
is opened after the stack's lock is taken and closed, with ``signal.Stop``, before the snapshot is written
and the lock released, pkg/backend/diy/backend.go ``Update`` and ``apply``). A SIGINT outside that window
meets Go's default action, and the CLI exits at once, leaving its lock: the next update of the stack fails
with "the stack is currently locked". A job cannot know which side of the window its cancel lands on (a
server killed just as its update finishes), so after interrupting the engine it releases the lock that
exactly that process left: its lock file names its pid and host, and the job reaped that process itself.

Read here: ``file://`` backends (the lock files under ``.pulumi/locks/``). Other backends are not read
(``locks_of`` says None): the next call hears Pulumi's own words and how to recover.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class StackLock:
    path: Path
    pid: int
    user: str
    host: str
    since: str  # as Pulumi wrote it (RFC 3339)

    def alive(self) -> bool | None:
        """Whether its process still runs: None when it is another machine's (unknown from here)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def sentence(self) -> str:
        state = {False: "; that process is no longer running (an interrupted update left it)",
                 True: "; that process is still running"}.get(self.alive(), "")
        return f"Pulumi's lock taken by {self.user}@{self.host} (process {self.pid}) at {self.since[:19]}Z{state}"


def _backend_dir(backend_url: str) -> Path | None:
    if not backend_url.startswith("file://"):
        return None
    return Path(unquote(urlsplit(backend_url).path) or "/").expanduser()


def locks_of(backend_url: str, project: str, stack: str) -> list[StackLock] | None:
    """The stack's Pulumi locks (project-scoped and legacy layouts); None when the backend isn't read here."""
    directory = _backend_dir(backend_url)
    if directory is None:
        return None
    stack = stack.rsplit("/", 1)[-1]
    root = directory / ".pulumi" / "locks"
    found: list[StackLock] = []
    for lock_dir in (root / "organization" / project / stack, root / stack):
        for path in sorted(lock_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                found.append(StackLock(path, int(data["pid"]), str(data.get("username", "")),
                                       str(data.get("hostname", "")), str(data.get("timestamp", ""))))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written or removed this moment
    return found


def release_left_by(backend_url: str, project: str, stack: str, pids: set[int]) -> list[StackLock]:
    """Remove the locks of ``stack`` that the processes ``pids`` of this machine took and, now dead, left
    (what Pulumi's own unlock removes: the lock file and its attributes file). Returns those removed."""
    released = []
    for lock in locks_of(backend_url, project, stack) or []:
        if lock.pid in pids and lock.alive() is False:
            for path in (lock.path, lock.path.with_name(lock.path.name + ".attrs")):
                path.unlink(missing_ok=True)
            released.append(lock)
    return released


_HOLDER = re.compile(r"created by (?P<user>[^@\s]+)@(?P<host>\S+) \(pid (?P<pid>\d+)\) at (?P<since>\S+)")


def locked_message(engine_output: str, stack: str) -> tuple[str, str] | None:
    """What to tell a caller whose engine command met Pulumi's lock (None when ``engine_output`` says no such
    thing): who holds it, whether that process still runs, and how to recover."""
    if "the stack is currently locked by" not in engine_output:
        return None
    holders = [StackLock(Path(), int(m["pid"]), m["user"], m["host"], m["since"])
               for m in _HOLDER.finditer(engine_output)]
    held = "; ".join(lock.sentence() for lock in holders) or "Pulumi's lock of another update"
    what = f"stack {stack} is locked: {held}"
    if holders and all(lock.alive() is False for lock in holders):
        fix = (f"nothing holds it any more: release it with `pulumi cancel --yes --stack {stack}` (same backend "
               "and PULUMI_HOME as this server), then call again")
    else:
        fix = (f"wait for that update to finish; if you know it is gone (killed, or its machine lost), release the "
               f"lock with `pulumi cancel --yes --stack {stack}` (same backend as this server), then call again")
    return what, fix
