"""The wizard's jobs, in memory only: a planned deploy holds the user's credentials until its job process
starts (then only that process has them) or it expires unstarted; its steps are what the progress page and
its event stream show."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from .account import Account
from .progress import Step
from .runner import SetupResult
from .settings import Credentials, DeploySettings
from .target import Target

PLAN_TTL_SECONDS = 15 * 60
RESULT_TTL_SECONDS = 24 * 3600  # a finished job's page (it holds no credential)
Kind = Literal["deploy", "teardown"]
State = Literal["planned", "running", "succeeded", "failed", "cancelled"]


@dataclass
class Job:
    kind: Kind
    settings: DeploySettings
    target: Target
    credentials: Credentials | None = None  # dropped as soon as the job has run
    account: Account | None = None
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    state: State = "planned"
    steps: list[Step] = field(default_factory=list)
    result: SetupResult | None = None
    left_behind: list[str] = field(default_factory=list)
    process: Any = None  # the enginejob.Job running it (its own process, holding the prefix's lock)
    notes: list[str] = field(default_factory=list)  # what cleaning the form removed, in words (shown with the plan)
    created: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Event streams waiting for the next step: woken from the job's thread, on their own loop.
    _watchers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=set, repr=False)

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    def lines(self) -> list[Step]:
        """What the page shows: one line per key (its latest step), in the order keys first appeared."""
        latest: dict[str, Step] = {}
        for i, step in enumerate(self.steps):
            latest[step.key or f"#{i}"] = step
        return list(latest.values())

    def add(self, step: Step) -> None:
        with self._lock:
            self.steps.append(step)
            self._notify()

    def finish(self, state: State) -> None:
        with self._lock:
            self.credentials = None
            self.state = state
            self._notify()

    def _notify(self) -> None:
        for loop, event in list(self._watchers):
            loop.call_soon_threadsafe(event.set)

    async def next_steps(self, seen: int, timeout: float) -> tuple[list[Step], bool]:
        """Steps after the first ``seen``, waiting up to ``timeout`` for one, and whether the job is done.
        No thread is held while an event stream waits."""
        event = asyncio.Event()
        watcher = (asyncio.get_running_loop(), event)
        with self._lock:
            if len(self.steps) > seen or self.done:
                return list(self.steps[seen:]), self.done
            self._watchers.add(watcher)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                self._watchers.discard(watcher)
        with self._lock:
            return list(self.steps[seen:]), self.done


class Jobs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> Job:
        with self._lock:
            self._expire()
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

    def running(self, prefix: str) -> Job | None:
        """This server's running job of ``prefix``, if any (so "already running" can lead to it)."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.state == "running" and j.settings.prefix == prefix),
                        None)

    def all_running(self) -> list[Job]:
        with self._lock:
            return [job for job in self._jobs.values() if job.state == "running"]

    def by_process(self, process_id: str) -> Job | None:
        """The wizard's job whose job process has this id (``enginejob.Busy.holder.job``), if it is ours."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.process is not None and j.process.id == process_id),
                        None)

    def _expire(self) -> None:
        now = time.monotonic()
        for job in list(self._jobs.values()):
            if job.state == "planned" and now - job.created > PLAN_TTL_SECONDS:
                job.credentials = None  # an unstarted plan forgets the credentials it held
                del self._jobs[job.id]
            elif job.done and now - job.created > RESULT_TTL_SECONDS:
                del self._jobs[job.id]

    def start(self, job: Job, work: Callable[[Job], State]) -> None:
        """Run ``work`` on a thread; it reports progress through ``job.add`` and returns the end state."""
        job.state = "running"

        def run() -> None:
            state: State = "failed"
            try:
                state = work(job)
            except Exception as exc:  # noqa: BLE001 - shown to the user (redacted), never a traceback
                job.add(Step(f"{type(exc).__name__}: {_safe(job, str(exc))}", "failed", "job"))
            finally:
                job.finish(state)

        threading.Thread(target=run, name=f"selfhosted-{job.kind}-{job.settings.prefix}", daemon=True).start()


def _safe(job: Job, text: str) -> str:
    from .progress import Redactor

    return Redactor(job.credentials.values() if job.credentials else [])(text)


__all__ = ["Job", "Jobs", "PLAN_TTL_SECONDS"]


