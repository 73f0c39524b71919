"""The parent's side: start job processes under a key lock, follow them, cancel them, sweep dead ones.

A job's directory ``<state dir>/jobs/<id>/`` holds ``job.json`` (what it is, and the facts it noted) and
``alive.lock``, flocked by the job process for as long as it lives: a directory whose lock can be taken
belongs to a dead job. The parent takes both locks before it starts the process and hands their
descriptors over, so there is no moment at which a sweep could mistake a starting job for a dead one, and
a second caller gets ``Busy`` at once.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import locks, procs

REPO = Path(__file__).resolve().parent.parent
# A hidden job directory older than this is a start that died between mkdir and rename.
STAGING_GRACE_SECONDS = 60


def default_state_dir() -> Path:
    """``$ARTIFACT_STATE_DIR``, else ``$XDG_STATE_HOME/artifact-slices``, else ``~/.local/state/artifact-slices``:
    one per user and machine, shared by the wizard, every CLI and the control plane."""
    if os.environ.get("ARTIFACT_STATE_DIR"):
        return Path(os.environ["ARTIFACT_STATE_DIR"])
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "artifact-slices"


class JobFailed(Exception):
    """The entry raised; the message is the entry's own words (it keeps secrets out of them)."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


class JobDied(Exception):
    """The job process ended without an outcome (it was killed)."""


@dataclass(frozen=True)
class Swept:
    """A job found dead at a sweep: what it was, and what it noted it may have left (e.g. apps at Fly)."""

    id: str
    kind: str
    key: str
    title: str
    started: str
    notes: dict[str, Any] = field(default_factory=dict)
    killed: tuple[int, ...] = ()

    def sentence(self) -> str:
        left = ""
        if self.notes.get("apps"):
            left = f"; it may have left {', '.join(map(str, self.notes['apps']))}: check them and tear down what is left"
        return f"{self.title or self.kind} started {self.started} was cut short (its process was killed){left}"


_END = object()


class Job:
    """A running job process, seen from its parent."""

    def __init__(self, job_id: str, process: subprocess.Popen[str], on_event: Callable[[Any], None] | None) -> None:
        self.id = job_id
        self.process = process
        self.pid = process.pid
        self._on_event = on_event
        self._events: queue.Queue[Any] = queue.Queue()
        self._outcome: dict[str, Any] | None = None
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"job-{job_id}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if message.get("type") == "event":
                    if self._on_event is not None:
                        try:
                            self._on_event(message["event"])
                        except Exception:  # noqa: BLE001 - a listener's fault must not lose the outcome
                            pass
                    else:
                        self._events.put(message["event"])
                elif message.get("type") in ("result", "error"):
                    self._outcome = message
        finally:
            self.process.wait()
            self._close_stdin()
            self._events.put(_END)
            self._done.set()

    def events(self) -> Iterator[Any]:
        """The job's events in order, until it ends (when no ``on_event`` was given)."""
        while True:
            event = self._events.get()
            if event is _END:
                self._events.put(_END)
                return
            yield event

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Any:
        """The entry's return value once the job has ended and everything of it is gone."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} still running after {timeout} s")
        outcome = self._outcome
        if outcome is None:
            raise JobDied(f"the job process ended without an outcome (exit status {self.process.returncode})")
        if outcome["type"] == "error":
            raise JobFailed(outcome.get("message", ""), outcome.get("kind", ""))
        return outcome.get("value")

    def cancel(self) -> None:
        """Ask the job to stop: its entry sees ``ctx.cancelled``, the running engine command one SIGINT."""
        stdin = self.process.stdin
        if stdin is None or self.done:
            return
        try:
            stdin.write("cancel\n")
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def _close_stdin(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass


class Runner:
    """One per process: starts job processes, holds key locks, sweeps what dead jobs left."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.lock_dir = self.state_dir / "locks"
        self.jobs_dir = self.state_dir / "jobs"
        self.owners_dir = self.state_dir / "owners"
        self._private: Path | None = None
        self._private_lock = threading.Lock()

    # -- this process's own directory -------------------------------------------------------------------------

    def private_dir(self) -> Path:
        """A directory (0700) of this process's, for files that must outlive one job but not the process (the
        control plane's saved plans): removed at exit, or, for a process killed outright (SIGKILL, or a
        SIGTERM with no handler runs no ``atexit``), by the next sweep of any process."""
        with self._private_lock:
            if self._private is None:
                staging = self.owners_dir / f".{os.getpid()}-{secrets.token_hex(4)}"
                staging.mkdir(mode=0o700, parents=True)
                alive = os.open(staging / "alive.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                locks.try_flock(alive)  # held until this process ends: the fd is never closed
                directory = staging.with_name(staging.name[1:])
                staging.rename(directory)
                atexit.register(shutil.rmtree, directory, ignore_errors=True)
                self._private = directory
            return self._private

    # -- locks ------------------------------------------------------------------------------------------------

    @contextmanager
    def hold(self, key: str, title: str, *, wait: float = 0.0) -> Iterator[None]:
        """``key``'s lock for inline work; ``Busy`` when another holder keeps it beyond ``wait`` seconds."""
        fd = locks.acquire(self.lock_dir, key, title, wait=wait)
        try:
            yield
        finally:
            os.close(fd)

    def holder(self, key: str) -> locks.Holder | None:
        return locks.holder_of(self.lock_dir, key)

    # -- jobs -------------------------------------------------------------------------------------------------

    def start(self, entry: str, payload: Any, *, kind: str, title: str, key: str | None = None, wait: float = 0.0,
              on_event: Callable[[Any], None] | None = None, env: dict[str, str] | None = None,
              pythonpath: list[str] | None = None) -> Job:
        """Start ``entry`` ("module:function", called as ``function(ctx, payload)``) in a job process.

        ``key``: the job's lock, taken here (``Busy`` if another holder keeps it beyond ``wait`` s) and held by
        the job process until it ends. ``payload`` reaches it through a pipe, never argv or the environment.
        ``on_event``: called on a reader thread for each event (else iterate ``Job.events()``)."""
        job_id = secrets.token_hex(8)
        directory = self.jobs_dir / job_id
        fds: list[int] = []
        try:
            if key is not None:
                fds.append(locks.acquire(self.lock_dir, key, title, wait=wait, job=job_id))
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Made under a hidden name and renamed once its lock is held: a sweep never sees it unlocked.
            staging = self.jobs_dir / f".{job_id}"
            staging.mkdir(mode=0o700, parents=True)
            alive = os.open(staging / "alive.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fds.append(alive)
            locks.try_flock(alive)
            (staging / "job.json").write_text(json.dumps(
                {"id": job_id, "kind": kind, "key": key or "", "title": title, "started": locks.now_iso(),
                 "parent": os.getpid(), "notes": {}}), encoding="utf-8")
            staging.rename(directory)
            child_env = {**os.environ, **(env or {}), procs.MARKER: str(directory),
                         "PYTHONPATH": os.pathsep.join([str(REPO), *(pythonpath or []),
                                                        *filter(None, [os.environ.get("PYTHONPATH")])])}
            process = subprocess.Popen(
                [sys.executable, "-m", "enginejob.child", str(directory), ",".join(map(str, fds)),
                 str(fds[0]) if key is not None else ""],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8", env=child_env,
                cwd=str(REPO), start_new_session=True, pass_fds=tuple(fds))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            shutil.rmtree(self.jobs_dir / f".{job_id}", ignore_errors=True)
            raise
        finally:
            for fd in fds:  # the job process holds them now (or, on failure, nobody)
                os.close(fd)
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps({"entry": entry, "payload": payload}) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died at once: wait() says so
        return Job(job_id, process, on_event)

    # -- sweeping ---------------------------------------------------------------------------------------------

    def sweep(self) -> list[Swept]:
        """Jobs whose process is dead: kill what still carries their marker, remove their directories, and say
        what each was and noted. Live jobs (of any process) are left alone."""
        swept: list[Swept] = []
        if self.jobs_dir.is_dir():
            for directory in sorted(self.jobs_dir.iterdir()):
                if not directory.is_dir():
                    continue
                if directory.name.startswith("."):  # a start cut short before its rename
                    if time.time() - directory.stat().st_mtime > STAGING_GRACE_SECONDS:
                        shutil.rmtree(directory, ignore_errors=True)
                    continue
                try:
                    fd = os.open(directory / "alive.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError:
                    continue
                try:
                    if not locks.try_flock(fd):
                        continue  # alive
                    killed = procs.kill_marked(str(directory))
                    try:
                        info = json.loads((directory / "job.json").read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        info = {}
                    shutil.rmtree(directory, ignore_errors=True)
                    swept.append(Swept(directory.name, str(info.get("kind", "")), str(info.get("key", "")),
                                       str(info.get("title", "")), str(info.get("started", "")),
                                       dict(info.get("notes") or {}), tuple(killed)))
                finally:
                    os.close(fd)
        if self.owners_dir.is_dir():  # private directories of processes that died
            for directory in self.owners_dir.iterdir():
                if directory.name.startswith("."):
                    if time.time() - directory.stat().st_mtime > STAGING_GRACE_SECONDS:
                        shutil.rmtree(directory, ignore_errors=True)
                    continue
                try:
                    fd = os.open(directory / "alive.lock", os.O_RDWR | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    if locks.try_flock(fd):
                        shutil.rmtree(directory, ignore_errors=True)
                finally:
                    os.close(fd)
        # Marked processes whose job directory is gone (removed by hand, or a crash between the two steps).
        for pid, where in procs.marked(str(self.jobs_dir)).items():
            if not Path(where).is_dir():
                procs.kill_marked(where)
        return swept
