"""What a job's entry function gets in the job process: its directory, the engine's environment, a way to
report events and facts, and the cancel that a parent's death or a signal sets."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TextIO, TypeVar

from . import procs

T = TypeVar("T")

# After the one SIGINT of a cancel, how long the engine gets to finish the steps in flight and record them (a
# Fly machine's create waits for it to start); then a second SIGINT stops it at once, and SIGKILL after that.
CANCEL_GRACE_SECONDS = 600.0
TERMINATE_GRACE_SECONDS = 30.0


class JobContext:
    def __init__(self, job_id: str, directory: Path, proto: TextIO | None) -> None:
        self.id = job_id
        self.dir = directory
        # Everything the engine starts carries the marker, so the job's end and a later sweep find it.
        self.env: dict[str, str] = {procs.MARKER: str(directory)}
        self.cancelled = threading.Event()
        self.parent_gone = threading.Event()
        self._proto = proto
        self._write = threading.Lock()
        self._engine_lock = threading.Lock()

    # -- reporting -------------------------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        """An event to the parent, in order; dropped once the parent is gone."""
        self._send({"type": "event", "event": event})

    def _send(self, message: dict[str, Any]) -> None:
        if self._proto is None or self.parent_gone.is_set():
            return
        line = json.dumps(message, default=str) + "\n"
        with self._write:
            try:
                self._proto.write(line)
                self._proto.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.parent_gone.set()

    def note(self, **facts: Any) -> None:
        """Facts a sweep reports if this job dies without finishing (e.g. which apps it may have made)."""
        path = self.dir / "job.json"
        with self._write:
            data = json.loads(path.read_text(encoding="utf-8"))
            data.setdefault("notes", {}).update(facts)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)

    # -- the engine ------------------------------------------------------------------------------------------

    def engine(self, call: Callable[[], T], *, stack: Any = None) -> tuple[T | None, BaseException | None, bool]:
        """Run one Automation API call on a thread of its own and wait for it: ``(value, error, cancelled)``.

        A cancel while it runs sends the Pulumi CLI one SIGINT (it then finishes what is in flight, records
        it and releases the stack's lock) and keeps waiting until the call returns, so what follows (a
        rollback) never races the engine; if the CLI is still running ``CANCEL_GRACE_SECONDS`` later, a second
        SIGINT stops it at once, and ``TERMINATE_GRACE_SECONDS`` after that, SIGKILL. A call started after the
        cancel (that rollback) runs to its end.

        ``stack``: the Automation API stack the call writes. After an interrupt, the lock the interrupted CLI
        may have left (a SIGINT that came as it was starting or finishing kills it before it unlocks) is
        released, that one only (pulumi_lock.py)."""
        box: dict[str, Any] = {}
        finished = threading.Event()
        interruptible = not self.cancelled.is_set()

        def run() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            finally:
                finished.set()

        interrupted: list[int] = []
        with self._engine_lock:  # one engine command at a time: the SIGINT must reach the right one
            threading.Thread(target=run, name="engine-call", daemon=True).start()
            since = 0.0
            escalated = 0
            while not finished.wait(0.1):
                if not (interruptible and self.cancelled.is_set()):
                    continue
                if not interrupted:
                    interrupted = self._signal(procs.engine_children(), signal.SIGINT)
                    since = time.monotonic()
                elif escalated == 0 and time.monotonic() - since > CANCEL_GRACE_SECONDS:
                    escalated = 1
                    self._log(f"the engine (process {', '.join(map(str, interrupted))}) did not finish its cancel "
                              f"within {CANCEL_GRACE_SECONDS:.0f} s: interrupting it again, which stops it at once")
                    self._signal(interrupted, signal.SIGINT)
                elif escalated == 1 and time.monotonic() - since > CANCEL_GRACE_SECONDS + TERMINATE_GRACE_SECONDS:
                    escalated = 2
                    self._log(f"the engine (process {', '.join(map(str, interrupted))}) is still running: killed")
                    self._signal(interrupted, signal.SIGKILL)
        if interrupted and stack is not None:
            self._release_stack(stack, set(interrupted))
        return box.get("value"), box.get("error"), interruptible and self.cancelled.is_set()

    @staticmethod
    def _signal(pids: list[int], sig: signal.Signals) -> list[int]:
        sent = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                sent.append(pid)
            except ProcessLookupError:
                pass
        return sent

    def _release_stack(self, stack: Any, pids: set[int]) -> None:
        from . import pulumi_lock
        from .backend_lock import backend_url_of

        try:
            workspace = stack.workspace
            released = pulumi_lock.release_left_by(backend_url_of(workspace.env_vars, workspace.pulumi_home),
                                                   workspace.project_settings().name, stack.name, pids)
        except (OSError, ValueError) as exc:
            self._log(f"could not check stack {stack.name} for a lock the interrupted engine left: {exc}")
            return
        for lock in released:
            self._log(f"the interrupted engine (process {lock.pid}) exited before releasing stack {stack.name}: "
                      "its lock is released")

    @staticmethod
    def _log(message: str) -> None:
        print(f"enginejob: {message}", file=sys.stderr, flush=True)

    def cancel(self) -> None:
        self.cancelled.set()

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds`` unless cancelled; True when cancelled."""
        return self.cancelled.wait(seconds)
