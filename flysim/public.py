"""A stand-in for an app's public hostname, `<app>.fly.dev`.

Fly's proxy answers `https://<app>.fly.dev` from the app's started, healthy
machines through the app's public IPs. flysim runs no containers, so any request
whose `Host` header is `<app>.fly.dev` (any port) is answered here, as that
app's HTTP service would answer it:

- `GET /health`: 200 `{"status": "ok", "app": "<app>"}` when the app has a
  public IP (v4, shared v4 or v6; not private or egress) and a started machine
  whose checks all pass (checks.py); else 503 with a short plain-text reason;
- any other path: 404; another method on `/health`: 405.

Clients reach it by connecting to flysim and sending the Host header (what
`curl --resolve <app>.fly.dev:443:127.0.0.1` does). No token is needed; the
call log records it as the non-mutating operation `PublicHTTP`.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import checks

if TYPE_CHECKING:  # pragma: no cover
    from .sim import Sim

OPERATION = "PublicHTTP"
PUBLIC_IP_TYPES = {"v4", "shared_v4", "v6"}
_HOST = re.compile(r"^(?P<app>[a-z0-9][a-z0-9-]*)\.fly\.dev\.?(?::\d+)?$")


def app_of_host(host: str) -> str | None:
    m = _HOST.match(host.strip().lower())
    return m.group("app") if m else None


def answer(sim: Sim, app_name: str, method: str, path: str) -> Response:
    app = sim.find_app(app_name)
    if app is None:
        return PlainTextResponse(f"no app named {app_name}\n", status_code=404)
    if path != "/health":
        return PlainTextResponse("404 page not found\n", status_code=404)
    if method not in ("GET", "HEAD"):
        return PlainTextResponse("method not allowed\n", status_code=405, headers={"Allow": "GET, HEAD"})
    if not any(ip.type in PUBLIC_IP_TYPES for ip in app.ips):
        return PlainTextResponse("no public IP\n", status_code=503)
    started = [m for m in app.machines.values() if m.state == "started"]
    if not started:
        return PlainTextResponse("no started machine\n", status_code=503)
    failures = []
    for m in sorted(started, key=lambda m: m.created_at):
        ok, why = checks.passing(sim, app, m)
        if ok:
            return JSONResponse({"status": "ok", "app": app.name})
        failures.append(f"{m.id}: {why}")
    return PlainTextResponse("checks failing: " + "; ".join(failures) + "\n", status_code=503)


class PublicHostMiddleware:
    """Routes `Host: <app>.fly.dev` requests to `answer`; everything else to the API."""

    def __init__(self, app: ASGIApp, sim: Sim) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            app_name = app_of_host(host)
            if app_name is not None:
                await self._serve(scope, receive, send, app_name, host)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, app_name: str, host: str) -> None:
        status = 500
        started = time.time()
        try:
            if self.sim.profile.request > 0:
                await asyncio.sleep(self.sim.profile.request)
            response = answer(self.sim, app_name, scope["method"], scope["path"])
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self.sim.record_call(scope["method"], scope["path"], status, OPERATION, mutating=False,
                                 host=host.split(":")[0].lower(), started=started)
