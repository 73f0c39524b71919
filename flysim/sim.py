"""The simulator's shared world: store, engine, auth, faults, rate limits, call log.

Handlers get a `Ctx` per request with helpers that look objects up *and*
enforce the caller's token scope, so no handler can forget the check.
"""

from __future__ import annotations


import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request

from .auth import Auth, Principal, unauthorized
from .engine import Engine
from .errors import ApiError, bad_request, not_found
from .faults import FaultRegistry
from . import execsim
from .images import Catalogue, run_release
from .latency import LatencyProfile, get_profile
from .logs import LogBook
from .ratelimit import RateLimiter
from .state import App, Machine, Store, Volume


@dataclass
class SimConfig:
    token: str
    orgs: list[str] = field(default_factory=lambda: ["personal"])
    latency: str | LatencyProfile = "fast"  # a profile name, or custom timings
    state_file: str | None = None
    rate_limit: bool = True
    fault_seed: int | None = None
    # Image catalogue layered over the built-in one: a JSON file path or a parsed document.
    images: str | os.PathLike[str] | Mapping[str, Any] | None = None


class Sim:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.images = Catalogue.load(config.images)  # first: a bad catalogue stops startup with its error
        self.profile: LatencyProfile = (
            config.latency if isinstance(config.latency, LatencyProfile) else get_profile(config.latency)
        )
        self.store = Store(config.state_file)
        self.auth = Auth(config.token, self.store)
        self.faults = FaultRegistry(seed=config.fault_seed)
        self.ratelimiter = RateLimiter(enabled=config.rate_limit)
        self.logs = LogBook()
        self.engine = Engine(self.profile, self.faults, self.persist, release=self._run_release,
                             log=self.logs.emit, boot_output=self._boot_output)
        self.calls: list[dict[str, Any]] = []
        self._calls_lock = threading.Lock()
        for slug in config.orgs:
            self.store.ensure_org(slug, name=slug)
        self._settle_after_reload()
        self.persist()

    def _settle_after_reload(self) -> None:
        """Machines caught mid-transition by a restart land in their target state."""
        settle = {
            "starting": "started",
            "restarting": "started",
            "replacing": "started",
            "stopping": "stopped",
            "suspending": "suspended",
            "destroying": "destroyed",
        }
        for app in self.store.world.apps.values():
            for m in app.machines.values():
                if m.state in settle:
                    m.state = settle[m.state]
                    if m.state == "destroyed":
                        for v in app.volumes.values():
                            if v.attached_machine_id == m.id:
                                v.attached_machine_id = None

    def _run_release(self, app: App, m: Machine) -> dict[str, Any]:
        entry = self.images.resolve(str(m.config.get("image") or ""))
        return run_release(entry, app, m, self.store.world.apps)

    def _boot_output(self, app: App, m: Machine) -> dict[str, Any] | None:
        """What the image prints as it boots (its catalogue entry's `boot`)."""
        entry = self.images.resolve(str(m.config.get("image") or ""))
        if entry.boot is None:
            return None
        out = {"stdout": entry.boot.stdout, "stderr": entry.boot.stderr}
        if entry.boot.run:
            ran = execsim.run(app, m, [entry.boot.run], scripts=entry.exec)
            out = {"stdout": out["stdout"] + ran["stdout"], "stderr": out["stderr"] + ran["stderr"]}
        return out

    def reset(self) -> None:
        self.engine.cancel_all()
        world = self.store.world
        world.apps.clear()
        world.tokens.clear()
        self.logs.clear()
        world.orgs = {slug: org for slug, org in world.orgs.items() if slug in self.config.orgs}
        for slug in self.config.orgs:
            self.store.ensure_org(slug, name=slug)
        self.faults.clear()
        self.ratelimiter.reset()
        self.clear_calls()
        self.persist()
        self.engine.notifier.notify()

    def persist(self) -> None:
        self.store.save()

    def record_call(
        self,
        method: str,
        path: str,
        status: int,
        operation: str,
        graphql: str | None = None,
        *,
        mutating: bool | None = None,
        host: str | None = None,
        started: float | None = None,
    ) -> None:
        # `mutating` lets tests and benchmarks tell reads from writes; a GraphQL query is a POST that reads.
        if mutating is None:
            mutating = method in ("POST", "PUT", "PATCH", "DELETE") and graphql != "query"
        entry: dict[str, Any] = {"method": method, "path": path, "status": status, "operation": operation,
                                 "mutating": mutating, "at": round(time.time(), 4)}
        if started is not None:  # when the request arrived: timelines in the benchmark
            entry["started"] = round(started, 4)
        if graphql:
            entry["graphql"] = graphql
        if host:
            entry["host"] = host
        with self._calls_lock:
            self.calls.append(entry)
            del self.calls[:-10000]

    def calls_snapshot(self) -> list[dict[str, Any]]:
        with self._calls_lock:
            return list(self.calls)

    def clear_calls(self) -> None:
        with self._calls_lock:
            self.calls.clear()

    def find_app(self, name: str) -> App | None:
        return self.store.world.apps.get(name)


class Ctx:
    """Per-request helpers. `principal` is None only for unauthenticated routes."""

    def __init__(self, sim: Sim, request: Request, principal: Principal | None, operation: str) -> None:
        self.sim = sim
        self.request = request
        self.principal = principal
        self.operation = operation
        self._body: Any = None
        self._body_read = False

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.path_params)

    @property
    def query(self) -> QueryParams:
        return self.request.query_params

    async def body(self) -> dict[str, Any]:
        """Parsed JSON body; an empty body is `{}`; anything else non-object is a 400."""
        if not self._body_read:
            raw = await self.request.body()
            self._body_read = True
            if not raw.strip():
                self._body = {}
            else:
                try:
                    self._body = json.loads(raw)
                except ValueError:
                    raise bad_request("invalid JSON body") from None
            if not isinstance(self._body, dict):
                raise bad_request("request body must be a JSON object")
        return self._body

    def nonce(self) -> str | None:
        return self.request.headers.get("fly-machine-lease-nonce") or None

    # -- scoped lookups ------------------------------------------------------
    def require_principal(self) -> Principal:
        if self.principal is None:
            raise unauthorized()
        return self.principal

    def app(self, name: str | None = None) -> App:
        name = name if name is not None else self.params["app_name"]
        app = self.sim.find_app(name)
        principal = self.require_principal()
        if app is None:
            # A scoped token must not learn whether apps outside its scope exist.
            if principal.kind == "app" and principal.app_name != name:
                raise unauthorized()
            raise ApiError(404, "app not found")
        if not principal.can_app(app):
            raise unauthorized()
        return app

    def machine(self, app: App, machine_id: str | None = None, *, allow_destroyed: bool = True) -> Machine:
        mid = machine_id if machine_id is not None else self.params["machine_id"]
        m = app.machines.get(mid)
        if m is None or (not allow_destroyed and m.state == "destroyed"):
            raise not_found("machine")
        return m

    def volume(self, app: App, volume_id: str | None = None) -> Volume:
        vid = volume_id if volume_id is not None else self.params["volume_id"]
        v = app.volumes.get(vid)
        if v is None:
            raise not_found("volume")
        return v

    def require_org(self, slug: str) -> None:
        principal = self.require_principal()
        if not principal.can_org(slug):
            raise unauthorized()
