"""Apps: create, show, list, delete (`/v1/apps...`)."""

from __future__ import annotations

import re

from starlette.responses import JSONResponse, Response

from . import render
from .errors import ApiError, bad_request
from .sim import Ctx
from .state import App

# Fly app names: lowercase letters, digits and dashes, starting with a letter.
APP_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


async def create(ctx: Ctx) -> Response:
    body = await ctx.body()
    name = body.get("app_name") or body.get("name")
    org_slug = body.get("org_slug")
    key = body.get("idempotency_key")
    if not isinstance(name, str) or not name:
        raise bad_request("app_name is required")
    if not isinstance(org_slug, str) or not org_slug:
        raise bad_request("org_slug is required")
    if not APP_NAME_RE.match(name):
        raise ApiError(422, "Name may only contain lowercase letters, numbers, and dashes")
    world = ctx.sim.store.world
    ctx.require_org(org_slug)  # scope first: a scoped token must not probe other orgs
    if org_slug not in world.orgs:
        raise ApiError(404, f"organization {org_slug} not found")
    existing = world.apps.get(name)
    if key:
        # Spec: same key + same name returns the first app; same key + other name is refused.
        for other in world.apps.values():
            if other.idempotency_key == key and other.org_slug == org_slug:
                if other.name != name:
                    raise ApiError(422, "idempotency_key was already used to create a different app")
                return JSONResponse({"id": other.id, "created_at": other.created_at}, status_code=201)
    if existing is not None:
        # App names are global across all of Fly, not per org.
        raise ApiError(422, "Name has already been taken", code="name_taken")
    app = App(
        name=name,
        org_slug=org_slug,
        network=body.get("network") or None,
        internal_numeric_id=ctx.sim.store.numeric_id(),
        idempotency_key=key or None,
    )
    world.apps[name] = app
    ctx.sim.persist()
    return JSONResponse({"id": app.id, "created_at": app.created_at}, status_code=201)


async def show(ctx: Ctx) -> Response:
    app = ctx.app()
    return JSONResponse(render.app(app, ctx.sim.store.world.orgs.get(app.org_slug)))


async def list_(ctx: Ctx) -> Response:
    org_slug = ctx.query.get("org_slug")
    if not org_slug:
        raise bad_request("org_slug is required")
    world = ctx.sim.store.world
    principal = ctx.require_principal()
    if principal.kind == "app":
        apps = [a for a in world.apps.values() if a.name == principal.app_name and a.org_slug == org_slug]
    else:
        ctx.require_org(org_slug)
        if org_slug not in world.orgs:
            raise ApiError(404, f"organization {org_slug} not found")
        apps = [a for a in world.apps.values() if a.org_slug == org_slug]
    org = world.orgs.get(org_slug)
    items = [render.app(a, org) for a in sorted(apps, key=lambda a: a.name)]
    return JSONResponse({"apps": items, "total_apps": len(items)})


async def delete(ctx: Ctx) -> Response:
    app = ctx.app()
    # Fly tears everything down in the background; the simulator does it now.
    for m in app.machines.values():
        ctx.sim.engine.cancel(m.id)
        m.state = "destroyed"
        m.lease = None
    del ctx.sim.store.world.apps[app.name]
    ctx.sim.logs.forget(app)
    for tok in list(ctx.sim.store.world.tokens.values()):
        if tok.kind == "app" and tok.app_name == app.name:
            tok.revoked = True
    ctx.sim.persist()
    ctx.sim.engine.notifier.notify()
    return Response(status_code=202)
