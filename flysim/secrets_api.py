"""App secrets (`/v1/apps/{app}/secrets`). Values are never stored or returned.

Each mutation bumps the app's secrets version; machines created/updated with
`min_secrets_version` above it are refused (see machines.check_secrets_version).
Only a keyed digest of each value is kept, so a changed value shows up as a
changed digest, which is all Fly's own listing reveals.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from starlette.responses import JSONResponse, Response

from .errors import bad_request, not_found
from .sim import Ctx
from .state import App, Secret, now_ms, rfc3339

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def digest(app: App, value: str) -> str:
    return hmac.new(app.id.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def _render(s: Secret) -> dict[str, Any]:
    return {"name": s.name, "digest": s.digest, "created_at": rfc3339(s.created_at), "updated_at": rfc3339(s.updated_at)}


def _set(app: App, name: str, value: str) -> Secret:
    if not NAME_RE.match(name):
        raise bad_request(f"invalid secret name {name!r}")
    d = digest(app, value)
    cur = app.secrets.get(name)
    if cur is None:
        cur = app.secrets[name] = Secret(name=name, digest=d)
    elif cur.digest != d:
        cur.digest, cur.updated_at = d, now_ms()
    return cur


async def list_(ctx: Ctx) -> Response:
    app = ctx.app()
    return JSONResponse({"secrets": [_render(s) for _, s in sorted(app.secrets.items())]})


def apply(app: App, values: Any) -> None:
    """Set (value) and unset (None) secrets in one new secrets version; all checked first.

    Shared by REST `Secrets_update` and GraphQL `setSecrets`/`unsetSecrets`."""
    if not isinstance(values, dict):
        raise bad_request("values must be an object of secret names to values (null to unset)")
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise bad_request(f"value for {name} must be a string or null")
        if value is not None and not NAME_RE.match(name):
            raise bad_request(f"invalid secret name {name!r}")
    for name, value in values.items():
        if value is None:
            app.secrets.pop(name, None)
        else:
            _set(app, name, value)
    app.secrets_version += 1


async def update(ctx: Ctx) -> Response:
    """Secrets_update: `{"values": {NAME: value | null}}`; null unsets NAME."""
    app = ctx.app()
    body = await ctx.body()
    apply(app, body.get("values"))
    ctx.sim.persist()
    return JSONResponse({
        "secrets": [_render(s) for _, s in sorted(app.secrets.items())],
        "version": app.secrets_version,
        "Version": app.secrets_version,
    })


async def show(ctx: Ctx) -> Response:
    app = ctx.app()
    s = app.secrets.get(ctx.params["secret_name"])
    if s is None:
        raise not_found("secret")
    return JSONResponse(_render(s))


async def create(ctx: Ctx) -> Response:
    app = ctx.app()
    body = await ctx.body()
    value = body.get("value")
    if not isinstance(value, str):
        raise bad_request("value must be a string")
    s = _set(app, ctx.params["secret_name"], value)
    app.secrets_version += 1
    ctx.sim.persist()
    return JSONResponse({**_render(s), "version": app.secrets_version, "Version": app.secrets_version}, status_code=201)


async def delete(ctx: Ctx) -> Response:
    app = ctx.app()
    name = ctx.params["secret_name"]
    if name not in app.secrets:
        raise not_found("secret")
    del app.secrets[name]
    app.secrets_version += 1
    ctx.sim.persist()
    return JSONResponse({"version": app.secrets_version, "Version": app.secrets_version})


A = "/v1/apps/{app_name}"
ROUTES = [
    ("GET", A + "/secrets", "Secrets_list", list_),
    ("POST", A + "/secrets", "Secrets_update", update),
    ("GET", A + "/secrets/{secret_name}", "Secret_get", show),
    ("POST", A + "/secrets/{secret_name}", "Secret_create", create),
    ("DELETE", A + "/secrets/{secret_name}", "Secret_delete", delete),
]
