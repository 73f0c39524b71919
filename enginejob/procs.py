"""A job's processes, found by the marker in their environment.

Every process a job process starts (the Pulumi CLI, its language host, the dynamic providers) inherits
``ARTIFACT_ENGINE_JOB=<job dir>`` from it, whatever process group or parent it ends up with: the engine
starts its plugins in process groups of their own, and a killed parent leaves them to init. The marker is
how the job itself and a later sweep find every one of them (``/proc``; elsewhere nothing is found).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

MARKER = "ARTIFACT_ENGINE_JOB"
_PROC = Path("/proc")


def _marker_of(pid: int) -> str | None:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return None
    prefix = f"{MARKER}=".encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix):].decode(errors="replace")
    return None


def _parents() -> dict[int, int]:
    """Every live process's parent, by pid."""
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return parents


def marked(where: str) -> dict[int, str]:
    """The live processes (other than this one) of the job ``where`` (or of any job below it), by pid: those
    whose marker says so, and their descendants. Descendants count because a child caught between its fork
    and the end of its exec shows an empty environment for a moment (long enough to matter under load)."""
    found: dict[int, str] = {}
    if not _PROC.is_dir():
        return found
    me = os.getpid()
    parents = _parents()
    for pid in parents:
        value = _marker_of(pid)
        if value is not None and (value == where or value.startswith(where.rstrip("/") + "/")):
            found[pid] = value
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    queue = list(found)
    while queue:
        pid = queue.pop()
        for child in children.get(pid, []):
            if child not in found:
                found[child] = found[pid]
                queue.append(child)
    return {pid: value for pid, value in found.items() if pid != me and _alive(pid)}


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def kill_marked(where: str, *, grace: float = 2.0) -> list[int]:
    """End every process of the job ``where``: SIGTERM, then SIGKILL to what is left after ``grace`` seconds,
    and again for any that a round brought to light. Returns the pids that were there."""
    ended: list[int] = []
    for _round in range(5):
        pids = [p for p in marked(where) if p not in ended]
        if not pids:
            break
        ended += pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
    return ended


def become_subreaper() -> None:
    """Orphans among this process's descendants become its children, not init's (Linux), so the job's end
    finds every one of them by parentage while it lives."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def engine_children() -> list[int]:
    """This process's own children that are the Pulumi CLI (the Automation API runs one command at a time
    per thread): the ones a cancel sends SIGINT to."""
    pids: list[int] = []
    for children in (_PROC / str(os.getpid()) / "task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in children.read_text().split()]
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if (_PROC / str(pid) / "comm").read_text().strip().startswith("pulumi"):
                found.append(pid)
    return found
