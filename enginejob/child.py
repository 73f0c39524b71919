"""``python -m enginejob.child <job dir> <lock fds> [<key lock fd>]``: a job process.

It reads its entry and payload from the first line of stdin, then keeps reading: ``cancel`` cancels, and
the end of stdin means the process that started it is gone (killed, whatever the signal), which cancels
too. SIGTERM, SIGINT and SIGHUP cancel as well. Its messages go out on the stdout it was started with
(the entry's own prints go to stderr). When the entry returns it kills every process still carrying the
job's marker, removes the job's directory, releases its locks and only then reports the outcome, so a
parent that has the outcome knows nothing of the job is left.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import locks, procs
from .context import JobContext


def _load(entry: str) -> Any:
    module, _, name = entry.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def main(argv: list[str]) -> int:
    directory = Path(argv[0])
    lock_fds = [int(fd) for fd in argv[1].split(",") if fd] if len(argv) > 1 else []
    for fd in lock_fds:  # held, never handed on to the engine
        os.set_inheritable(fd, False)
    procs.become_subreaper()
    if len(argv) > 2 and argv[2]:  # the key lock: its holder is this process now, not the parent
        _own(int(argv[2]))
    # The protocol keeps the stdout we were given; anything else printed goes to stderr.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    first = sys.stdin.readline()
    ctx = JobContext(directory.name, directory, proto)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda _s, _f: ctx.cancel())
    if not first:  # the parent died before it sent the job
        ctx.parent_gone.set()
        _finish(ctx, lock_fds)
        return 1
    request = json.loads(first)

    def watch_parent() -> None:
        for line in sys.stdin:
            if line.strip() == "cancel":
                ctx.cancel()
        ctx.parent_gone.set()  # stdin closed: the parent is gone, or no longer listening
        ctx.cancel()

    threading.Thread(target=watch_parent, name="parent-pipe", daemon=True).start()
    outcome: dict[str, Any]
    try:
        value = _load(request["entry"])(ctx, request.get("payload"))
        outcome = {"type": "result", "value": value}
    except Exception as exc:  # noqa: BLE001 - reported to the parent in the entry's own words
        outcome = {"type": "error", "kind": type(exc).__name__, "message": str(exc)}
    _finish(ctx, lock_fds)
    ctx._send(outcome)
    return 0 if outcome["type"] == "result" else 1


def _own(fd: int) -> None:
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"{}")
        locks.write_holder(fd, locks.Holder(str(data.get("title", "")), os.getpid(), str(data.get("since", "")),
                                            str(data.get("job", ""))))
    except (OSError, ValueError):
        pass


def _finish(ctx: JobContext, lock_fds: list[int]) -> None:
    """Nothing of the job outlives it: its marked processes, its directory, then its locks."""
    procs.kill_marked(str(ctx.dir))
    shutil.rmtree(ctx.dir, ignore_errors=True)
    for fd in lock_fds:
        try:
            os.close(fd)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
