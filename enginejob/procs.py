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


def marked(where: str) -> dict[int, str]:
    """The live processes (other than this one) whose marker is ``where`` or lies below it, by pid."""
    found: dict[int, str] = {}
    if not _PROC.is_dir():
        return found
    me = os.getpid()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        value = _marker_of(int(entry.name))
        if value is not None and (value == where or value.startswith(where.rstrip("/") + "/")) and _alive(int(entry.name)):
            found[int(entry.name)] = value
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def kill_marked(where: str, *, grace: float = 2.0) -> list[int]:
    """End every process marked ``where``: SIGTERM, then SIGKILL to what is left after ``grace`` seconds.
    Returns the pids that were there."""
    pids = list(marked(where))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) and _marker_of(p) is not None for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid) and _marker_of(pid) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return pids


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
