"""What a job's entry function gets in the job process: its directory, the engine's environment, a way to
report events and facts, and the cancel that a parent's death or a signal sets."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, TextIO, TypeVar

from . import procs

T = TypeVar("T")


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
        self._interrupting = False

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

    def engine(self, call: Callable[[], T]) -> tuple[T | None, BaseException | None, bool]:
        """Run one Automation API call on a thread of its own and wait for it: ``(value, error, cancelled)``.

        A cancel while it runs sends the Pulumi CLI one SIGINT (it then finishes what is in flight, records
        it and releases the stack's lock) and keeps waiting until the call returns, so what follows (a
        rollback) never races the engine. A call started after the cancel (that rollback) runs to its end."""
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

        with self._engine_lock:  # one engine command at a time: the SIGINT must reach the right one
            threading.Thread(target=run, name="engine-call", daemon=True).start()
            signalled = False
            while not finished.wait(0.1):
                if interruptible and self.cancelled.is_set() and not signalled:
                    signalled = self._interrupt_engine()
        return box.get("value"), box.get("error"), interruptible and self.cancelled.is_set()

    def _interrupt_engine(self) -> bool:
        import signal

        pids = procs.engine_children()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        return bool(pids)

    def cancel(self) -> None:
        self.cancelled.set()

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds`` unless cancelled; True when cancelled."""
        return self.cancelled.wait(seconds)
