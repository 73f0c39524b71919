"""ASGI application: routing, auth, rate limits, faults, call log, admin API.

Every API route is an `Endpoint` that runs the same pipeline:
latency -> authenticate -> rate limit -> fault (before commit) -> handler ->
fault (after commit) -> record the call. Routes carry their OpenAPI
operationId, which is what the call log and fault matching use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import apps, machines, ratelimit, volumes
from . import checks as checks_mod
from .errors import ApiError
from .faults import Fault, FaultSpec
from .public import PublicHostMiddleware
from .sim import Ctx, Sim, SimConfig

log = logging.getLogger("flysim")

Handler = Callable[[Ctx], Awaitable[Response]]


class _DropFilter(logging.Filter):
    """Hide uvicorn's complaint about the responses we cut on purpose (fault kind `fail`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_DropFilter())


def _error(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.http_status, headers=err.headers)


def _fault_error(f: Fault) -> ApiError:
    headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
    default = "rate limit exceeded" if f.status == 429 else "injected fault: upstream unavailable"
    return ApiError(f.status, f.message or default, headers=headers)


class Endpoint:
    """One API operation as an ASGI app (so a fault can cut the connection)."""

    def __init__(self, sim: Sim, operation: str, handler: Handler, *, auth: bool = True) -> None:
        self.sim = sim
        self.operation = operation
        self.handler = handler
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        status = 500
        started = time.time()
        try:
            response = await self._pipeline(request)
            if response is None:  # fault kind "fail": cut the connection mid-response
                status = 0
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
                await send({"type": "http.response.body", "body": b'{"id":', "more_body": True})
                return
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self.sim.record_call(request.method, request.url.path, status, self.operation,
                                 graphql=scope.get("flysim.graphql_operation"), started=started)

    async def _pipeline(self, request: Request) -> Response | None:
        sim = self.sim
        if sim.profile.request > 0:
            await asyncio.sleep(sim.profile.request)
        params = request.path_params
        app_name = params.get("app_name")
        machine_id = params.get("machine_id")
        try:
            principal = sim.auth.authenticate(request.headers.get("authorization")) if self.auth else None
            body = await request.body() if self.operation == "Apps_create" else b""
            ident = ratelimit.identifier(self.operation, params, request.query_params, body)
            app = sim.find_app(app_name) if app_name else None
            retry = sim.ratelimiter.check(self.operation, ident, org_slug=app.org_slug if app else None)
            if retry is not None:
                raise ApiError(429, "rate limit exceeded", headers={"Retry-After": str(retry)})
        except ApiError as err:
            return _error(err)
        fields: frozenset[str] = frozenset()
        if self.operation == "GraphQL":
            from .graphql import top_level_fields

            fields = top_level_fields(await request.body())
        fault = sim.faults.match_request(self.operation, app_name, machine_id, fields)
        if fault is not None and not fault.after_commit:
            return await self._apply(fault)
        ctx = Ctx(sim, request, principal, self.operation)
        try:
            response = await self.handler(ctx)
        except ApiError as err:
            response = _error(err)
        except Exception:  # a simulator bug: answer like an API error, keep serving
            log.exception("flysim: unhandled error in %s", self.operation)
            response = _error(ApiError(500, "internal error in flysim"))
        if fault is not None:  # after_commit: the mutation stays, the answer is lost
            return await self._apply(fault)
        return response

    async def _apply(self, fault: Fault) -> Response | None:
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            return _error(ApiError(504, "gateway timeout"))
        if fault.kind == "fail":
            return None
        return _error(_fault_error(fault))


class PathEndpoint:
    """All the operations served on one path, dispatched by method.

    A method the path does not serve gets 405 with an `Allow` header listing every
    method it does serve (RFC 9110, 15.5.6) and Fly's `ErrorResponse` body, before
    authentication, as a router answers it.
    """

    def __init__(self, sim: Sim, endpoints: dict[str, Endpoint]) -> None:
        self.sim = sim
        self.endpoints = endpoints
        allowed = set(endpoints) | ({"HEAD"} if "GET" in endpoints else set())
        self.allow = ", ".join(sorted(allowed))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        endpoint = self.endpoints.get("GET" if method == "HEAD" else method)
        if endpoint is not None:
            await endpoint(scope, receive, send)
            return
        response = JSONResponse({"error": f"method {method} not allowed; allowed: {self.allow}"},
                                status_code=405, headers={"Allow": self.allow})
        await response(scope, receive, send)
        self.sim.record_call(method, scope["path"], 405, "unknown")


# -- admin API (no auth; loopback tool) ------------------------------------------------
def _admin_routes(sim: Sim) -> list[Route]:
    async def state(request: Request) -> Response:
        return JSONResponse(sim.store.view(lambda app, m: checks_mod.statuses(sim, app, m)))

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            sim.clear_calls()
            return JSONResponse({"ok": True})
        return JSONResponse(sim.calls_snapshot())

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sim.faults.clear()
            return JSONResponse({"ok": True})
        if request.method == "POST":
            try:
                spec = FaultSpec.model_validate(await request.json())
            except (ValidationError, ValueError) as exc:
                return JSONResponse({"error": f"invalid fault: {exc}"}, status_code=400)
            return JSONResponse(sim.faults.add(spec).model_dump(), status_code=201)
        return JSONResponse([f.model_dump() for f in sim.faults.list()])

    async def fault(request: Request) -> Response:
        if not sim.faults.remove(request.path_params["fault_id"]):
            return JSONResponse({"error": "fault not found"}, status_code=404)
        sim.engine.changed()
        return JSONResponse({"ok": True})

    async def checks(request: Request) -> Response:
        """Force a health check's status: {app, machine, name, status, output?}."""
        try:
            body = await request.json()
            app = sim.store.world.apps[body["app"]]
            m = app.machines[body["machine"]]
            name, status = body["name"], body["status"]
        except (KeyError, ValueError, TypeError):
            return JSONResponse({"error": "need existing app, machine, and name/status"}, status_code=400)
        if status not in ("passing", "warning", "critical"):
            return JSONResponse({"error": "status must be passing, warning or critical"}, status_code=400)
        from .state import rfc3339

        m.checks[name] = {"status": status, "output": body.get("output", ""), "updated_at": rfc3339(), "forced": "1"}
        sim.engine.changed()
        return JSONResponse({"ok": True})

    async def reset_rate_limits(request: Request) -> Response:
        sim.ratelimiter.reset()
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> Response:
        """Forget apps, tokens, calls, faults and rate-limit buckets; keep the seeded orgs."""
        sim.reset()
        return JSONResponse({"ok": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return [
        Route("/__flysim/state", state, methods=["GET"]),
        Route("/__flysim/calls", calls, methods=["GET", "DELETE"]),
        Route("/__flysim/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/__flysim/faults/{fault_id}", fault, methods=["DELETE"]),
        Route("/__flysim/checks", checks, methods=["POST"]),
        Route("/__flysim/rate_limits", reset_rate_limits, methods=["DELETE"]),
        Route("/__flysim/reset", reset, methods=["POST"]),
        Route("/__flysim/health", health, methods=["GET"]),
    ]


# -- API route table -----------------------------------------------------------------------
A = "/v1/apps/{app_name}"
M = A + "/machines/{machine_id}"

API_ROUTES: list[tuple[str, str, str, Handler]] = [
    ("GET", "/v1/apps", "Apps_list", apps.list_),
    ("GET", "/v1/orgs/{org_slug}/machines", "Machines_org_list", machines.org_list),
    ("GET", "/v1/orgs/{org_slug}/volumes", "Volumes_org_list", volumes.org_list),
    ("POST", "/v1/apps", "Apps_create", apps.create),
    ("GET", A, "Apps_show", apps.show),
    ("DELETE", A, "Apps_delete", apps.delete),
    # volumes
    ("GET", A + "/volumes", "Volumes_list", volumes.list_),
    ("POST", A + "/volumes", "Volumes_create", volumes.create),
    ("GET", A + "/volumes/{volume_id}", "Volumes_get_by_id", volumes.show),
    ("PUT", A + "/volumes/{volume_id}", "Volumes_update", volumes.update),
    ("DELETE", A + "/volumes/{volume_id}", "Volume_delete", volumes.delete),
    ("PUT", A + "/volumes/{volume_id}/extend", "Volumes_extend", volumes.extend),
    ("GET", A + "/volumes/{volume_id}/snapshots", "Volumes_list_snapshots", volumes.list_snapshots),
    ("POST", A + "/volumes/{volume_id}/snapshots", "createVolumeSnapshot", volumes.create_snapshot),
    # machines
    ("GET", A + "/machines", "Machines_list", machines.list_),
    ("POST", A + "/machines", "Machines_create", machines.create),
    ("GET", M, "Machines_show", machines.show),
    ("POST", M, "Machines_update", machines.update),
    ("DELETE", M, "Machines_delete", machines.delete),
    ("POST", M + "/start", "Machines_start", machines.start),
    ("POST", M + "/stop", "Machines_stop", machines.stop),
    ("POST", M + "/restart", "Machines_restart", machines.restart),
    ("POST", M + "/suspend", "Machines_suspend", machines.suspend),
    ("POST", M + "/signal", "Machines_signal", machines.signal),
    ("POST", M + "/cordon", "Machines_cordon", machines.cordon),
    ("POST", M + "/uncordon", "Machines_uncordon", machines.cordon),
    ("GET", M + "/wait", "Machines_wait", machines.wait),
    ("GET", M + "/events", "Machines_list_events", machines.events),
    ("GET", M + "/versions", "Machines_list_versions", machines.versions),
    ("GET", M + "/ps", "Machines_list_processes", machines.ps),
    ("POST", M + "/exec", "Machines_exec", machines.exec_),
    ("GET", M + "/lease", "Machines_show_lease", machines.lease_show),
    ("POST", M + "/lease", "Machines_create_lease", machines.lease_create),
    ("DELETE", M + "/lease", "Machines_release_lease", machines.lease_release),
    ("GET", M + "/metadata", "Machines_show_metadata", machines.metadata_show),
    ("PATCH", M + "/metadata", "Machines_update_metadata", machines.metadata_update),
    ("PUT", M + "/metadata", "Machines_update_metadata_deprecated", machines.metadata_update),
    ("GET", M + "/metadata/{key}", "Machines_get_metadata_key", machines.metadata_get_key),
    ("POST", M + "/metadata/{key}", "Machines_upsert_metadata", machines.metadata_upsert),
    ("DELETE", M + "/metadata/{key}", "Machines_delete_metadata", machines.metadata_delete),
]


def extra_routes() -> list[tuple[str, str, str, Handler]]:
    """Phase-2 modules register here (imported lazily to keep the core small)."""
    out: list[tuple[str, str, str, Handler]] = []
    try:
        from . import network, secrets_api
    except ImportError:  # pragma: no cover - during incremental development
        return out
    out.extend(secrets_api.ROUTES)
    out.extend(network.ROUTES)
    return out


def create_app(config: SimConfig | None = None, *, sim: Sim | None = None) -> Starlette:
    sim = sim or Sim(config or SimConfig(token="flysim"))
    routes: list[Any] = _admin_routes(sim)
    table = API_ROUTES + extra_routes()
    from .graphql import graphql_handler

    from .logs import ROUTES as LOGS_ROUTES

    # Not the Machines API (and not in its spec): api.fly.io's GraphQL and logs, on the same host here.
    table.append(("POST", "/graphql", "GraphQL", graphql_handler))
    table.extend(LOGS_ROUTES)
    by_path: dict[str, dict[str, Endpoint]] = {}
    for method, path, op, handler in table:
        by_path.setdefault(path, {})[method] = Endpoint(sim, op, handler)
    for path, endpoints in by_path.items():
        routes.append(Route(path, PathEndpoint(sim, endpoints)))

    async def unknown(ctx: Ctx) -> Response:
        raise ApiError(404, "not found")

    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    # Unknown /v1 and /graphql paths still need a token (401 before 404).
    routes.append(Route("/v1/{path:path}", Endpoint(sim, "unknown", unknown), methods=any_method))
    routes.append(Route("/graphql", Endpoint(sim, "unknown", unknown), methods=any_method))
    routes.append(Route("/{path:path}", Endpoint(sim, "unknown", unknown, auth=False), methods=any_method))
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        sim.engine.cancel_all()

    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(PublicHostMiddleware, sim=sim)])
    app.state.sim = sim
    return app
