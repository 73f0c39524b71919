"""Machine lifecycle: state transitions, events, and waiting for states.

Each lifecycle operation is a coroutine that moves a machine through its
intermediate states with delays from the latency profile. With the `zero`
profile the coroutine never really awaits, so it runs to completion inline
(before the HTTP response is sent); otherwise it runs as an asyncio task, and
a newer operation on the same machine cancels the older one (like flyd, the
latest request wins).

Waiters register a predicate with the Notifier and are woken on every state
change, so `/wait` answers as soon as the state is reached, without polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from . import ids
from .images import is_release_machine
from .latency import LatencyProfile
from .state import App, Machine, now_ms, rfc3339

if TYPE_CHECKING:  # pragma: no cover
    from .faults import FaultRegistry

STABLE_STATES = {"created", "started", "stopped", "suspended", "failed", "destroyed"}
DEFAULT_MAX_RETRIES = 10  # Fly's default for the on-failure restart policy


class Notifier:
    """Futures keyed by predicates, resolved on `notify()` (no polling)."""

    def __init__(self) -> None:
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[bool]]] = []

    def notify(self) -> None:
        still: list[tuple[Callable[[], bool], asyncio.Future[bool]]] = []
        for pred, fut in self._waiters:
            if fut.done():
                continue
            try:
                ok = pred()
            except Exception:  # a predicate over a vanished object: wake it up
                ok = True
            if ok:
                fut.set_result(True)
            else:
                still.append((pred, fut))
        self._waiters = still

    async def wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        if pred():
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return pred()
        finally:
            self._waiters = [(p, f) for p, f in self._waiters if f is not fut]


class Engine:
    def __init__(
        self,
        profile: LatencyProfile,
        faults: FaultRegistry,
        persist: Callable[[], None],
        release: Callable[[App, Machine], dict[str, Any]] | None = None,
        log: Callable[..., None] | None = None,
        boot_output: Callable[[App, Machine], dict[str, Any] | None] | None = None,
    ) -> None:
        self.profile = profile
        self.faults = faults
        self.persist = persist
        # Runs a release machine's command (the image catalogue's `release`);
        # None: release machines keep running like any other machine.
        self.release = release
        # The app's logs (flysim.logs.LogBook.emit) and what the image prints when it boots.
        self.log: Callable[..., None] = log or (lambda *args, **kwargs: None)
        self.boot_output = boot_output
        self.notifier = Notifier()
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    # -- plumbing -----------------------------------------------------------
    async def _sleep(self, seconds: float) -> None:
        # No await at all for zero latency: keeps the whole operation synchronous.
        if seconds > 0:
            await asyncio.sleep(seconds)

    def changed(self) -> None:
        self.persist()
        self.notifier.notify()

    def set_state(self, m: Machine, state: str) -> None:
        m.state = state
        m.updated_at = now_ms()
        self.changed()

    def event(
        self,
        m: Machine,
        type_: str,
        status: str,
        source: str = "flyd",
        request: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "id": ids.ulid(),
            "type": type_,
            "status": status,
            "source": source,
            "timestamp": now_ms(),
        }
        if request is not None:
            ev["request"] = request
        m.events.append(ev)
        del m.events[:-100]  # bounded history
        return ev

    async def run(self, m: Machine, op: Coroutine[Any, Any, None]) -> None:
        """Run a lifecycle op: inline for zero latency, else as a task (latest wins)."""
        old = self._tasks.pop(m.id, None)
        if old is not None and not old.done() and old is not asyncio.current_task():
            old.cancel()
        if self.profile.immediate:
            await op
            return
        task = asyncio.get_running_loop().create_task(op)
        self._tasks[m.id] = task

        def forget(t: asyncio.Task[Any], mid: str = m.id) -> None:
            if self._tasks.get(mid) is t:
                del self._tasks[mid]

        task.add_done_callback(forget)

    def cancel(self, machine_id: str) -> None:
        task = self._tasks.pop(machine_id, None)
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def cancel_all(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        self._tasks.clear()

    # -- operations -----------------------------------------------------------
    async def launch(self, app: App, m: Machine, skip_launch: bool) -> None:
        """After create: `created`, then boot unless skip_launch."""
        if skip_launch:
            return
        await self._sleep(self.profile.create)
        await self.boot(app, m)

    def _log_init(self, app: App, m: Machine) -> None:
        """What flyd's init prints as a machine's main process starts (seen in any `fly logs`)."""
        self.log(app, m, "app", " INFO Starting init (commit: flysim)...")
        init = m.config.get("init") or {}
        argv = [*(init.get("entrypoint") or []), *(init.get("cmd") or [])]
        if argv:
            self.log(app, m, "app", f" INFO Preparing to run: `{' '.join(map(str, argv))}` as root")

    def _log_exit(self, app: App, m: Machine, code: int) -> None:
        self.log(app, m, "app", f" INFO Main child exited normally with code: {code}")
        self.log(app, m, "app", " INFO Starting clean up.")

    async def boot(self, app: App, m: Machine, *, resume: bool = False) -> None:
        while True:
            self.set_state(m, "starting")
            await self._sleep(self.profile.resume if resume else self.profile.start)
            if not resume:
                self._log_init(app, m)
            crash = self.faults.take_crash(app.name, m.id)
            if crash is None:
                m.crash_count = 0
                self.event(m, "start", "started", "flyd")
                self.set_state(m, "started")
                self.log(app, m, "runner", "Machine resumed" if resume else "Machine started")
                if not resume and self.boot_output is not None and not is_release_machine(m):
                    printed = self.boot_output(app, m)
                    if printed:
                        self.log(app, m, "app", printed.get("stdout", ""))
                        self.log(app, m, "app", printed.get("stderr", ""))
                if self.release is not None and is_release_machine(m):
                    await self._run_release(app, m)
                return
            # Crash on boot: the main process prints the fault's message (if any) and exits non-zero.
            self.log(app, m, "app", crash.message or "")
            self._log_exit(app, m, 1)
            m.crash_count += 1
            restart = m.config.get("restart") or {}
            policy = restart.get("policy") or "on-failure"
            max_retries = restart.get("max_retries", DEFAULT_MAX_RETRIES)
            retrying = policy != "no" and m.crash_count <= max_retries
            self.event(
                m,
                "exit",
                "stopped",
                "flyd",
                {
                    "exit_event": {
                        "exit_code": 1,
                        "guest_exit_code": 1,
                        "oom_killed": False,
                        "requested_stop": False,
                        "restarting": retrying,
                        "exited_at": rfc3339(),
                    }
                },
            )
            if retrying:
                resume = False
                continue
            # Out of retries (or policy "no"): stopped for "no", failed otherwise.
            if policy != "no":
                self.log(app, m, "runner", f"machine has reached its max restart count of {max_retries}")
            self.set_state(m, "stopped" if policy == "no" else "failed")
            if m.config.get("auto_destroy"):
                await self.destroy(app, m, stopped_already=True)
            return

    async def _run_release(self, app: App, m: Machine) -> None:
        """A release machine runs its command once, exits with its code, and stops.

        Like flyctl's release machines (restart policy "no"), it is not restarted
        whatever the code; with `auto_destroy` it is then destroyed. The command
        "runs" for the profile's `stop` time so that `started` can be observed.
        """
        assert self.release is not None
        await self._sleep(self.profile.stop)
        result = self.release(app, m)
        m.last_run = result
        code = int(result["exit_code"])
        self.log(app, m, "app", str(result.get("stdout") or ""))
        self.log(app, m, "app", str(result.get("stderr") or ""))
        self._log_exit(app, m, code)
        self.event(
            m,
            "exit",
            "stopped",
            "flyd",
            {
                "exit_event": {
                    "exit_code": code,
                    "guest_exit_code": code,
                    "oom_killed": False,
                    "requested_stop": False,
                    "restarting": False,
                    "exited_at": rfc3339(),
                }
            },
        )
        self.set_state(m, "stopped")
        if m.config.get("auto_destroy"):
            await self.destroy(app, m, stopped_already=True)

    async def stop(self, app: App, m: Machine, *, source: str = "user") -> None:
        if m.state in ("started", "starting", "restarting", "replacing"):
            self.set_state(m, "stopping")
            self.log(app, m, "app", " INFO Sending signal SIGINT to main child process")
            await self._sleep(self.profile.stop)
            self._log_exit(app, m, 0)
            self.event(m, "stop", "stopped", source)
            self.event(
                m,
                "exit",
                "stopped",
                "flyd",
                {
                    "exit_event": {
                        "exit_code": 0,
                        "guest_exit_code": 0,
                        "oom_killed": False,
                        "requested_stop": True,
                        "restarting": False,
                        "exited_at": rfc3339(),
                    }
                },
            )
            self.set_state(m, "stopped")
        if m.config.get("auto_destroy") and m.state == "stopped":
            await self.destroy(app, m, stopped_already=True)

    async def suspend(self, app: App, m: Machine) -> None:
        if m.state not in ("started", "starting"):
            return
        self.set_state(m, "suspending")
        await self._sleep(self.profile.suspend)
        self.event(m, "suspend", "suspended", "user")
        self.log(app, m, "runner", "Machine suspended")
        self.set_state(m, "suspended")

    async def start(self, app: App, m: Machine) -> None:
        resume = m.state == "suspended"
        await self.boot(app, m, resume=resume)

    async def restart(self, app: App, m: Machine) -> None:
        """Stop and boot again; the handler has already put a running machine in `restarting`."""
        if m.state in ("started", "starting", "restarting"):
            if m.state != "restarting":
                self.event(m, "restart", "restarting", "user")
                self.set_state(m, "restarting")
            await self._sleep(self.profile.stop)
            self._log_exit(app, m, 0)
            self.event(m, "exit", "stopped", "flyd", {"exit_event": {"exit_code": 0, "requested_stop": True, "restarting": True, "exited_at": rfc3339()}})
        else:
            self.event(m, "restart", "restarting", "user")
        await self.boot(app, m, resume=m.state == "suspended")

    async def replace(self, app: App, m: Machine, was: str, skip_launch: bool) -> None:
        """After an update: a running machine is replaced and rebooted."""
        if was in ("started", "starting", "restarting", "replacing"):
            self.set_state(m, "replacing")
            await self._sleep(self.profile.replace)
            await self.boot(app, m)
        elif skip_launch:
            # Keeps a stopped machine stopped; a never-started one stays created.
            self.set_state(m, "stopped" if was in ("stopped", "suspended", "failed") else was)
        else:
            await self.boot(app, m)

    async def destroy(self, app: App, m: Machine, *, stopped_already: bool = False) -> None:
        if not stopped_already and m.state in ("started", "starting", "restarting", "replacing", "stopping", "suspending"):
            self.set_state(m, "stopping")
            await self._sleep(self.profile.stop)
            self.event(m, "exit", "stopped", "flyd", {"exit_event": {"exit_code": 0, "requested_stop": True, "exited_at": rfc3339()}})
        self.set_state(m, "destroying")
        await self._sleep(self.profile.destroy)
        self.event(m, "destroy", "destroyed", "user")
        # Volumes stay bound until the machine is really gone (Fly answers 412
        # "volume is currently bound to machine" in between).
        for vid in m.mounted_volume_ids():
            vol = app.volumes.get(vid)
            if vol is not None and vol.attached_machine_id == m.id:
                vol.attached_machine_id = None
        m.lease = None
        self.set_state(m, "destroyed")
