"""Named locks that hold across processes and threads: ``flock`` on one file per key.

Every acquisition opens the file anew, so two threads of one process exclude each other as two processes
do (a flock belongs to an open file description). The kernel releases a lock when its last descriptor
closes, so a killed holder never leaves a stale lock. The holder writes who it is into the file; a caller
that finds the lock taken reads that, to say who holds it and since when.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# How often a waiting caller tries again: short at first (a job often ends within a second), then steadier.
_POLL_FIRST, _POLL_MAX = 0.05, 0.5


@dataclass(frozen=True)
class Holder:
    title: str  # what holds it, in words: "a deploy of 'twin3'"
    pid: int
    since: str  # ISO 8601, UTC
    job: str = ""

    def sentence(self) -> str:
        when = self.since[11:19] + " UTC" if len(self.since) >= 19 else "a moment ago"
        return f"{self.title or 'another job'} is already running (since {when}, process {self.pid})"


class Busy(Exception):
    """The key is held by another job (of this process or another)."""

    def __init__(self, key: str, holder: Holder | None, waited: float) -> None:
        self.key, self.holder, self.waited = key, holder, waited
        who = holder.sentence() if holder else "another job holds it"
        after = f" (waited {waited:.0f} s)" if waited >= 1 else ""
        super().__init__(f"{who}{after}; wait for it to finish, then try again")


def lock_path(lock_dir: Path, key: str) -> Path:
    """One file per key: a readable part of the key and a digest of all of it (keys hold URLs)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[-60:].strip("_.") or "key"
    return lock_dir / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"


def read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
        return Holder(str(data["title"]), int(data["pid"]), str(data["since"]), str(data.get("job", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or being written


def write_holder(fd: int, holder: Holder) -> None:
    data = json.dumps({"title": holder.title, "pid": holder.pid, "since": holder.since, "job": holder.job}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def acquire(lock_dir: Path, key: str, title: str, *, wait: float = 0.0, job: str = "") -> int:
    """The lock's descriptor (close it to release), with ``title`` recorded as its holder; ``Busy`` when
    another holder keeps it beyond ``wait`` seconds."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(lock_dir, key)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    started = time.monotonic()
    pause = _POLL_FIRST
    try:
        while not try_flock(fd):
            waited = time.monotonic() - started
            if waited >= wait:
                raise Busy(key, read_holder(path), waited)
            time.sleep(min(pause, max(0.0, wait - waited)))
            pause = min(pause * 2, _POLL_MAX)
        write_holder(fd, Holder(title, os.getpid(), now_iso(), job))
        return fd
    except BaseException:
        os.close(fd)
        raise


def holder_of(lock_dir: Path, key: str) -> Holder | None:
    """Who holds ``key`` now, or None when nobody does (a look, not a reservation)."""
    path = lock_path(lock_dir, key)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return read_holder(path) or Holder("another job", 0, "")
    finally:
        os.close(fd)
