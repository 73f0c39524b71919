"""Volumes: create, show, list, update, extend, delete, snapshots."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from . import ids, render
from .errors import ApiError, bad_request, not_found, precondition
from .render import empty
from .sim import Ctx
from .state import Volume

MAX_SIZE_GB = 500  # Fly's documented volume maximum
DEFAULT_SIZE_GB = 3


def _int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{field} must be an integer")
    return value


def _live_attachment(ctx: Ctx, v: Volume) -> str | None:
    """The id of a non-destroyed machine bound to the volume, if any."""
    if not v.attached_machine_id:
        return None
    app = ctx.app()
    m = app.machines.get(v.attached_machine_id)
    if m is None or m.state == "destroyed":
        v.attached_machine_id = None
        return None
    return m.id


async def create(ctx: Ctx) -> Response:
    app = ctx.app()
    body = await ctx.body()
    name = body.get("name")
    region = body.get("region")
    if not isinstance(name, str) or not name:
        raise bad_request("name is required")
    if not isinstance(region, str) or not region:
        raise bad_request("region is required")
    # Fly's documented default (superfly/docs machines/api/volumes-resource: size_gb, "default 3").
    size = _int(body.get("size_gb", DEFAULT_SIZE_GB), "size_gb")
    if size < 1 or size > MAX_SIZE_GB:
        raise bad_request(f"size_gb must be between 1 and {MAX_SIZE_GB}")
    files: dict[str, str] = {}
    dirs: list[str] = []
    source_id = body.get("source_volume_id")
    if source_id:
        src = app.volumes.get(source_id)
        if src is None:
            raise ApiError(404, "source volume not found")
        files, dirs = dict(src.files), list(src.dirs)
        size = max(size, src.size_gb)
    v = Volume(
        id=ids.volume_id(),
        name=name,
        region=region,
        zone=ids.zone(),
        size_gb=size,
        encrypted=body.get("encrypted", True) is not False,
        fstype=body.get("fstype") or "ext4",
        auto_backup_enabled=body.get("auto_backup_enabled", True) is not False,
        snapshot_retention=body.get("snapshot_retention") or 5,
        files=files,
        dirs=dirs,
    )
    app.volumes[v.id] = v
    ctx.sim.persist()
    await ctx.sim.engine._sleep(ctx.sim.profile.volume_create)
    return JSONResponse(render.volume(v))


async def show(ctx: Ctx) -> Response:
    app = ctx.app()
    v = ctx.volume(app)
    _live_attachment(ctx, v)
    return JSONResponse(render.volume(v))


async def list_(ctx: Ctx) -> Response:
    app = ctx.app()
    vols = sorted(app.volumes.values(), key=lambda v: v.created_at)
    for v in vols:
        _live_attachment(ctx, v)
    return JSONResponse([render.volume(v) for v in vols])


async def update(ctx: Ctx) -> Response:
    app = ctx.app()
    v = ctx.volume(app)
    body = await ctx.body()
    if "auto_backup_enabled" in body:
        v.auto_backup_enabled = bool(body["auto_backup_enabled"])
    if "snapshot_retention" in body:
        v.snapshot_retention = _int(body["snapshot_retention"], "snapshot_retention")
    ctx.sim.persist()
    return JSONResponse(render.volume(v))


async def extend(ctx: Ctx) -> Response:
    app = ctx.app()
    v = ctx.volume(app)
    body = await ctx.body()
    size = _int(body.get("size_gb"), "size_gb")
    if size <= v.size_gb:
        raise bad_request(f"size_gb must be greater than the current size ({v.size_gb}GB); volumes can only grow")
    if size > MAX_SIZE_GB:
        raise bad_request(f"size_gb must be at most {MAX_SIZE_GB}")
    v.size_gb = size
    ctx.sim.persist()
    # Fly extends online for running machines; a stopped one picks it up at boot.
    return JSONResponse({"volume": render.volume(v), "needs_restart": False})


async def delete(ctx: Ctx) -> Response:
    app = ctx.app()
    v = ctx.volume(app)
    bound = _live_attachment(ctx, v)
    if bound:
        raise precondition(f"volume is currently bound to machine: {bound}")
    del app.volumes[v.id]
    v.state = "destroyed"
    ctx.sim.persist()
    return JSONResponse(render.volume(v))


async def list_snapshots(ctx: Ctx) -> Response:
    app = ctx.app()
    ctx.volume(app)
    return JSONResponse([])


async def create_snapshot(ctx: Ctx) -> Response:
    app = ctx.app()
    ctx.volume(app)
    return empty()


async def org_list(ctx: Ctx) -> Response:
    """Volumes_org_list: every volume of the org's apps (OrgVolumesResponse)."""
    slug = ctx.params["org_slug"]
    ctx.require_org(slug)
    if slug not in ctx.sim.store.world.orgs:
        raise not_found("organization")
    region = ctx.query.get("region")
    out = []
    for app in ctx.sim.store.world.apps.values():
        if app.org_slug != slug:
            continue
        for v in sorted(app.volumes.values(), key=lambda v: v.created_at):
            if region and v.region != region:
                continue
            out.append({**render.volume(v), "app_name": app.name, "updated_at": render.rfc3339(v.created_at)})
    return JSONResponse({"volumes": out})
