"""Customer apps, server side: every engine run of a customer's stack is an ``enginejob`` job process that holds
the stack's lock at its backend (``enginejob.backend_lock``), so server processes on one backend take turns (a
caller waits up to ``lock_wait`` seconds, then is told who holds it); identical calls that arrive while a run is
in flight in this server join it, and every one of them gets its outcome and its progress.

The run itself is ``controlplane.customer_job`` (the ``CustomerApp`` component through the Automation API).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import enginejob

from .errors import ControlPlaneError
from .manifest import Slice

ENSURE_ENTRY = "controlplane.customer_job:ensure"
DESTROY_ENTRY = "controlplane.customer_job:destroy"
# How long a call waits for another run of the same customer (another server process, or a different call in
# this one) before it says who holds it. A run of one customer takes seconds; an agent's client waits 60 s.
LOCK_WAIT_SECONDS = 45.0


@dataclass
class Run:
    """One engine run, followed by every caller that asked for it."""

    title: str
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: ControlPlaneError | None = None
    callers: int = 1
    _done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)

    def add_event(self, event: Any) -> None:
        if isinstance(event, dict):
            with self._lock:
                self.events.append(event)
            self._notify()

    def finish(self, result: dict[str, Any] | None = None, error: ControlPlaneError | None = None) -> None:
        self.result, self.error = result, error
        self._done.set()
        self._notify()

    def _notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that caller's loop is closed: it left
                pass

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Blocking: the outcome (for callers without an event loop)."""
        self._done.wait(timeout)
        return self.outcome()

    def outcome(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    async def follow(self, progress: Callable[[float, str], Awaitable[None]] | None = None) -> dict[str, Any]:
        """Wait for the outcome, handing each event to ``progress`` as it arrives. A caller that goes away (its
        request cancelled) leaves the run going: a retry joins it."""
        loop, changed = asyncio.get_running_loop(), asyncio.Event()
        with self._lock:
            self._waiters.append((loop, changed))
        seen = 0
        try:
            while True:
                changed.clear()
                with self._lock:
                    new = self.events[seen:]
                done = self._done.is_set()
                for event in new:
                    seen += 1
                    if progress is not None:
                        await progress(seen, describe(event))
                if done:
                    return self.outcome()
                await changed.wait()
        finally:
            with self._lock:
                self._waiters.remove((loop, changed))


def describe(event: dict[str, Any]) -> str:
    if event.get("kind") == "step":
        if event.get("status") == "failed":
            return "a step failed"
        what = {"create": "creating", "update": "updating", "replace": "replacing", "delete": "deleting"}.get(
            event.get("op", ""), event.get("op", ""))
        if event.get("preview"):
            return f"would {event.get('op', '')} {event.get('type', '')} {event.get('resource', '')}"
        if event.get("status") == "done":
            return f"{event.get('type', '')} {event.get('resource', '')}: done"
        return f"{what} {event.get('type', '')} {event.get('resource', '')}"
    return str(event.get("message", "working"))


class Customers:
    """The slice's customer apps: one stack each, ``<prefix>-cust-<customer>``, in ``backend_url``."""

    def __init__(self, slice_: Slice, *, token: str, backend_url: str | None, passphrase: str | None,
                 runner: enginejob.Runner | None = None, lock_wait: float = LOCK_WAIT_SECONDS,
                 forget: Callable[[str], None] | None = None) -> None:
        self.slice = slice_
        self._token = token
        self.backend_url = backend_url
        self._passphrase = passphrase
        self.runner = runner or enginejob.Runner()
        self.lock_wait = lock_wait
        self._forget = forget or (lambda _name: None)
        self._inflight: dict[str, Run] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, slice_: Slice, token: str, **kwargs: Any) -> Customers:
        """The backend and passphrase as the operator's Pulumi environment has them (as ``--stack`` reads the
        slice's outputs): ``PULUMI_BACKEND_URL``, ``PULUMI_CONFIG_PASSPHRASE``."""
        return cls(slice_, token=token, backend_url=os.environ.get("PULUMI_BACKEND_URL") or None,
                   passphrase=os.environ.get("PULUMI_CONFIG_PASSPHRASE"), **kwargs)

    def stack(self, customer: str) -> str:
        return f"{self.slice.prefix}-cust-{customer}"

    def _payload(self, customer: str) -> dict[str, Any]:
        if not self.backend_url:
            raise ControlPlaneError("customer apps are Pulumi stacks in the slice's backend, and this server has none "
                                    "(PULUMI_BACKEND_URL is not set)",
                                    "start the server with the slice's Pulumi environment: PULUMI_BACKEND_URL and "
                                    "PULUMI_CONFIG_PASSPHRASE")
        if self._passphrase is None:
            raise ControlPlaneError("PULUMI_CONFIG_PASSPHRASE is not set, so the customer's secrets cannot be kept "
                                    "as Pulumi secrets", "set it to the slice backend's passphrase and restart")
        return {"backend_url": self.backend_url, "passphrase": self._passphrase, "token": self._token,
                "fly": self.slice.fly.model_dump(), "stack": self.stack(customer), "prefix": self.slice.prefix,
                "customer": customer, "org": self.slice.org}

    def ensure(self, customer: str, *, requested: dict[str, Any], secrets: dict[str, str] | None, dry_run: bool,
               defaults: dict[str, Any], template: dict[str, Any], registries: list[str], app_exists: bool,
               refresh: bool = False) -> Run:
        payload = {**self._payload(customer), "requested": requested, "secrets": secrets, "dry_run": dry_run,
                   "defaults": defaults, "template": template, "registries": registries, "app_exists": app_exists,
                   "refresh": refresh}
        # Identical calls join: the same customer, arguments (secrets included, as a digest held in memory only)
        # and mode.
        digest = hashlib.sha256(json.dumps([requested, secrets, dry_run, refresh], sort_keys=True).encode()).hexdigest()
        what = "a dry run" if dry_run else "an ensure"
        return self._start(f"ensure/{self.stack(customer)}/{digest}", customer, ENSURE_ENTRY, payload,
                           f"{what} of customer {customer!r}", "controlplane-ensure")

    def destroy(self, customer: str) -> Run:
        return self._start(f"destroy/{self.stack(customer)}", customer, DESTROY_ENTRY, self._payload(customer),
                           f"a destroy of customer {customer!r}", "controlplane-destroy")

    def _start(self, join: str, customer: str, entry: str, payload: dict[str, Any], title: str, kind: str) -> Run:
        with self._lock:
            run = self._inflight.get(join)
            if run is not None:
                run.callers += 1
                return run
            run = self._inflight[join] = Run(title)
        threading.Thread(target=self._execute, args=(run, join, customer, entry, payload, kind),
                         name=f"customer-{customer}", daemon=True).start()
        return run

    def _execute(self, run: Run, join: str, customer: str, entry: str, payload: dict[str, Any], kind: str) -> None:
        result: dict[str, Any] | None = None
        error: ControlPlaneError | None = None
        try:
            title = f"{run.title} (control plane process {os.getpid()})"
            job = self.runner.start(entry, {**payload, "title": title, "lock_wait": self.lock_wait}, kind=kind,
                                    title=title, on_event=run.add_event)
            result = job.wait()
        except enginejob.JobFailed as exc:
            message = str(exc)
            if exc.kind == "Busy":
                error = ControlPlaneError(f"customer {customer} is busy: {message}",
                                          "call again once that call has finished (its outcome is then the current "
                                          "state)")
            elif exc.kind == "LockUnavailable":
                error = ControlPlaneError(message, "fix the backend's connection settings of this server, then call "
                                                   "again")
            else:
                fix = ("correct the named argument(s) and call again" if message.startswith("invalid input")
                       else "read the failure above; fix what it names, then call again (a rerun adopts what was made)")
                error = ControlPlaneError(message, fix)
        except enginejob.JobDied as exc:
            error = ControlPlaneError(f"the engine run of customer {customer} ended without an outcome ({exc})",
                                      "call again: the rerun adopts what the cut-short run made")
        except Exception as exc:  # noqa: BLE001 - a bug: its type only
            error = ControlPlaneError(f"the engine run of customer {customer} could not start ({type(exc).__name__})",
                                      "check the server's log and its Pulumi environment, then call again")
        finally:
            with self._lock:
                self._inflight.pop(join, None)
            self._forget(self.stack(customer))
            run.finish(result, error)
