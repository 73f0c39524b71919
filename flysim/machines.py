"""Machines: CRUD, lifecycle actions, wait, events, leases, metadata, versions, exec."""

from __future__ import annotations

import copy
import re
import secrets
import time
from typing import Any

from starlette.responses import JSONResponse, Response

from . import checks, execsim, ids, render
from .engine import STABLE_STATES
from .errors import ApiError, bad_request, not_found, precondition
from .sim import Ctx
from .state import App, Lease, Machine, MachineVersionRecord, rfc3339

DEFAULT_GUEST = {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}
DEFAULT_REGION = "iad"
DEFAULT_LEASE_TTL = 30
MAX_LEASE_TTL = 10 * 365 * 24 * 3600  # beyond any real use; keeps expiry a representable date
WAIT_STATES = {"started", "stopped", "suspended", "destroyed", "failed", "settled"}
REGION_RE = re.compile(r"^[a-z]{3}$")
ACTIVE_STATES = {"started", "starting", "restarting", "replacing", "stopping", "suspending"}
SIGNALS = {"SIGABRT", "SIGALRM", "SIGFPE", "SIGHUP", "SIGILL", "SIGINT", "SIGKILL", "SIGPIPE",
           "SIGQUIT", "SIGSEGV", "SIGTERM", "SIGTRAP", "SIGUSR1", "SIGUSR2"}
# fly-go's `Kill` sends the number: `{"signal": 9}` (flaps/flaps_machines.go).
SIGNAL_NUMBERS = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 8: "SIGFPE",
                  9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM"}
STOPPING_SIGNALS = {"SIGKILL", "SIGTERM", "SIGINT"}


def _signal(value: Any, *, required: bool) -> str | None:
    """A signal name from a body's `signal` (a name or fly-go's number); 400 for anything else."""
    if value is None and not required:
        return None
    if isinstance(value, str) and value in SIGNALS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value in SIGNAL_NUMBERS:
        return SIGNAL_NUMBERS[value]
    raise bad_request(f"invalid signal {value!r}: want one of {sorted(SIGNALS)}")


def ok() -> JSONResponse:
    """The body Fly's docs show for stop, restart, suspend, signal, cordon, uncordon and
    machine delete (superfly/docs reference/machines/_machines_ok_true_resp.erb)."""
    return JSONResponse({"ok": True})


# -- helpers --------------------------------------------------------------------
def _str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad_request(f"invalid config.{field}: must be an object of string values")
    return value


def normalize_config(raw: Any) -> dict[str, Any]:
    """Validate the parts of fly.MachineConfig the simulator relies on; keep the rest."""
    if not isinstance(raw, dict):
        raise bad_request("config is required")
    cfg: dict[str, Any] = render.drop_none(copy.deepcopy(raw))
    image = cfg.get("image")
    if not isinstance(image, str) or not image.strip():
        raise bad_request("invalid config.image \"\": image is required")
    _str_map(cfg.get("env"), "env")
    _str_map(cfg.get("metadata"), "metadata")
    guest = cfg.get("guest")
    if guest is None:
        cfg["guest"] = dict(DEFAULT_GUEST)
    elif not isinstance(guest, dict):
        raise bad_request("invalid config.guest")
    else:
        for k, v in DEFAULT_GUEST.items():
            guest.setdefault(k, v)
    mounts = cfg.get("mounts")
    if mounts is not None:
        if not isinstance(mounts, list) or not all(isinstance(x, dict) for x in mounts):
            raise bad_request("invalid config.mounts")
        if len(mounts) > 1:
            raise bad_request("a machine can only mount one volume")
        for mt in mounts:
            if not isinstance(mt.get("volume"), str) or not mt.get("volume"):
                raise bad_request("invalid config.mounts: volume is required")
            path = mt.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise bad_request("invalid config.mounts: path must be absolute")
    checks.validate(cfg.get("checks"))
    for key in ("services", "files", "processes"):
        if key in cfg and not isinstance(cfg[key], list):
            raise bad_request(f"invalid config.{key}: must be an array")
    restart = cfg.get("restart")
    if restart is not None:
        if not isinstance(restart, dict) or restart.get("policy", "on-failure") not in ("no", "always", "on-failure"):
            raise bad_request("invalid config.restart.policy")
    return cfg


def bind_mounts(app: App, machine_id: str, region: str, cfg: dict[str, Any], previous: list[str]) -> None:
    """Check mounts (volume exists, same region, free) and record the attachment."""
    wanted = []
    for mt in cfg.get("mounts") or []:
        vid = mt["volume"]
        v = app.volumes.get(vid)
        if v is None:
            raise ApiError(404, f"volume {vid} not found")
        if v.region != region:
            raise bad_request(f"volume {vid} is in region {v.region}, machine requested region {region}")
        holder = v.attached_machine_id
        if holder and holder != machine_id:
            other = app.machines.get(holder)
            if other is not None and other.state != "destroyed":
                raise precondition(f"volume {vid} is already attached to machine {holder}")
        mt.setdefault("name", v.name)
        wanted.append(v)
    for vid in previous:
        v = app.volumes.get(vid)
        if v is not None and v.attached_machine_id == machine_id and all(w.id != vid for w in wanted):
            v.attached_machine_id = None
    for v in wanted:
        v.attached_machine_id = machine_id


def check_lease(ctx: Ctx, m: Machine) -> None:
    """A write to a machine leased by someone else needs that lease's nonce (409 otherwise)."""
    lease = m.lease
    if lease is None or not lease.active():
        return
    if ctx.nonce() != lease.nonce:
        raise ApiError(
            409,
            f"machine ID {m.id} lease currently held by {lease.owner}, expires at {rfc3339(lease.expires_at * 1000)}",
        )


def check_secrets_version(app: App, body: dict[str, Any]) -> None:
    want = body.get("min_secrets_version")
    if want is None:
        return
    if isinstance(want, bool) or not isinstance(want, int):
        raise bad_request("min_secrets_version must be an integer")
    if want > app.secrets_version:
        raise bad_request(
            f"min_secrets_version {want} is newer than the app's current secrets version {app.secrets_version}"
        )


def _new_lease(ctx: Ctx, m: Machine, ttl: int, description: str = "") -> Lease:
    principal = ctx.require_principal()
    m.lease = Lease(
        nonce=secrets.token_hex(6),
        owner=principal.owner,
        description=description,
        expires_at=int(time.time()) + ttl,
        version=m.instance_id,
    )
    return m.lease


def _ttl(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_LEASE_TTL
    try:
        ttl = int(value)
    except (TypeError, ValueError, OverflowError):
        raise bad_request("ttl must be an integer number of seconds") from None
    if ttl < 1 or ttl > MAX_LEASE_TTL:
        raise bad_request(f"ttl must be between 1 and {MAX_LEASE_TTL} seconds")
    return ttl


def _render(ctx: Ctx, app: App, m: Machine, **kwargs: Any) -> dict[str, Any]:
    return render.machine(m, checks=checks.statuses(ctx.sim, app, m), **kwargs)


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


# -- create / read ----------------------------------------------------------------
async def create(ctx: Ctx) -> Response:
    app = ctx.app()
    body = await ctx.body()
    cfg = normalize_config(body.get("config"))
    check_secrets_version(app, body)
    region = body.get("region")
    if region is None:
        mounted = [app.volumes[mt["volume"]] for mt in cfg.get("mounts") or [] if mt["volume"] in app.volumes]
        region = mounted[0].region if mounted else DEFAULT_REGION
    if not isinstance(region, str) or not REGION_RE.match(region):
        raise bad_request(f"invalid region {region!r}")
    name = body.get("name") or ids.machine_name()
    if not isinstance(name, str):
        raise bad_request("name must be a string")
    for other in app.machines.values():
        if other.name == name and other.state != "destroyed":
            raise ApiError(409, f"already_exists: machine ID {other.id} already exists with name \"{name}\"")
    mid = ids.machine_id()
    while mid in app.machines:
        mid = ids.machine_id()
    bind_mounts(app, mid, region, cfg, [])
    version = ids.ulid()
    ref = ctx.sim.images.image_ref(cfg["image"])
    m = Machine(
        id=mid,
        name=name,
        region=region,
        config=cfg,
        instance_id=version,
        image_ref=ref,
        versions=[MachineVersionRecord(version=version, config=copy.deepcopy(cfg), image_ref=ref)],
    )
    app.machines[mid] = m
    nonce = None
    if body.get("lease_ttl"):
        nonce = _new_lease(ctx, m, _ttl(body.get("lease_ttl"))).nonce
    engine = ctx.sim.engine
    engine.event(m, "launch", "created", "user")
    engine.set_state(m, "created")
    skip = bool(body.get("skip_launch"))
    await engine.run(m, engine.launch(app, m, skip))
    return JSONResponse(_render(ctx, app, m, nonce=nonce))


async def show(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app)
    version = ctx.query.get("version")
    if version and version != m.instance_id:
        rec = next((r for r in m.versions if r.version == version), None)
        if rec is None:
            raise not_found("machine version")
        out = _render(ctx, app, m)
        # An older version reports `replaced`, whatever the machine is doing now
        # (superfly/docs machines/machine-states, "Terminal states").
        out.update({"config": rec.config, "instance_id": rec.version, "version": rec.version, "state": "replaced"})
        out.pop("checks", None)
        if rec.image_ref:
            out["image_ref"] = rec.image_ref
        return JSONResponse(out)
    return JSONResponse(_render(ctx, app, m, include_lease=_bool(ctx.query.get("include_leases"))))


async def list_(ctx: Ctx) -> Response:
    app = ctx.app()
    q = ctx.query
    include_deleted = _bool(q.get("include_deleted"))
    region = q.get("region")
    states = {s for s in (q.get("state") or "").split(",") if s}
    meta = {k[len("metadata."):]: v for k, v in q.multi_items() if k.startswith("metadata.")}
    out = []
    for m in sorted(app.machines.values(), key=lambda m: m.created_at):
        if m.state == "destroyed" and not include_deleted:
            continue
        if region and m.region != region:
            continue
        if states and m.state not in states:
            continue
        md = m.config.get("metadata") or {}
        if any(md.get(k) != v for k, v in meta.items()):
            continue
        out.append(_render(ctx, app, m, include_lease=_bool(q.get("include_leases")), summary=_bool(q.get("summary"))))
    return JSONResponse(out)


# -- update ---------------------------------------------------------------------------
async def update(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    body = await ctx.body()
    current = body.get("current_version")
    if current and current != m.instance_id:
        raise ApiError(409, f"machine version {current} is not the current version ({m.instance_id})")
    cfg = normalize_config(body.get("config"))
    check_secrets_version(app, body)
    region = body.get("region")
    if region and region != m.region:
        raise bad_request(f"cannot move machine {m.id} from region {m.region} to {region}")
    name = body.get("name")
    if name and name != m.name:
        for other in app.machines.values():
            if other.id != m.id and other.name == name and other.state != "destroyed":
                raise ApiError(409, f"already_exists: machine ID {other.id} already exists with name \"{name}\"")
        m.name = name
    bind_mounts(app, m.id, m.region, cfg, m.mounted_volume_ids())
    was = m.state
    m.config = cfg
    m.instance_id = ids.ulid()
    m.image_ref = ctx.sim.images.image_ref(cfg["image"])
    m.versions.append(MachineVersionRecord(version=m.instance_id, config=copy.deepcopy(cfg), image_ref=m.image_ref))
    if m.lease and m.lease.active():
        m.lease.version = m.instance_id
    engine = ctx.sim.engine
    engine.event(m, "update", "replacing" if was in ACTIVE_STATES else was, "user")
    engine.changed()
    await engine.run(m, engine.replace(app, m, was, bool(body.get("skip_launch"))))
    return JSONResponse(_render(ctx, app, m))


# -- lifecycle actions ----------------------------------------------------------------
async def start(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    prev = m.state
    if prev in ("stopping", "destroying", "suspending"):
        raise precondition("machine still active, refusing to start")
    if prev == "replacing":
        raise precondition("unable to start machine from current state: 'replacing'")
    if prev not in ("started", "starting", "restarting"):
        engine = ctx.sim.engine
        await engine.run(m, engine.start(app, m))
    # superfly/docs reference/machines/_machines_start_resp.erb; fly-go's `Start`
    # decodes the body into MachineStartResponse, so it must be JSON.
    return JSONResponse({"previous_state": prev, "migrated": False, "new_host": ""})


async def stop(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    body = await ctx.body()
    _signal(body.get("signal"), required=False)
    if m.state in ("started", "starting", "restarting", "replacing"):
        engine = ctx.sim.engine
        await engine.run(m, engine.stop(app, m))
    return ok()


async def restart(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    # fly-go's `Restart` sends force_stop, timeout and signal as query parameters.
    _signal(ctx.query.get("signal") or None, required=False)
    # Restart is stop-then-start: a machine that is not running is simply started.
    if m.state in ("stopping", "suspending", "destroying", "replacing"):
        raise precondition(f"unable to restart machine from current state: '{m.state}'")
    engine = ctx.sim.engine
    if m.state in ("started", "starting", "restarting"):
        # `restarting` is a transient state (superfly/docs machines/machine-states);
        # set before answering so that a wait for `started` sees the restart.
        engine.event(m, "restart", "restarting", "user")
        engine.set_state(m, "restarting")
    await engine.run(m, engine.restart(app, m))
    return ok()


async def suspend(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    if m.state == "suspended":
        return ok()
    if m.state not in ("started", "starting"):
        raise precondition(f"unable to suspend machine from current state: '{m.state}'")
    engine = ctx.sim.engine
    await engine.run(m, engine.suspend(app, m))
    return ok()


async def delete(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    force = _bool(ctx.query.get("force")) or _bool(ctx.query.get("kill"))
    if m.state == "destroying":
        return ok()
    if m.state in ACTIVE_STATES and not force:
        raise precondition("unable to destroy machine, not currently stopped, suspended, failed or created")
    engine = ctx.sim.engine
    await engine.run(m, engine.destroy(app, m))
    return ok()


async def signal(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    body = await ctx.body()
    sig = _signal(body.get("signal"), required=True)
    if m.state != "started":
        raise precondition(f"machine is not started (state: {m.state})")
    if sig in STOPPING_SIGNALS:
        engine = ctx.sim.engine
        await engine.run(m, engine.stop(app, m, source="user"))
    return ok()


async def cordon(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    m.cordoned = ctx.operation == "Machines_cordon"
    ctx.sim.engine.changed()
    return ok()


# -- wait / events / versions ---------------------------------------------------------------
async def wait(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app)
    q = ctx.query
    targets: set[str] = set()
    for raw in q.getlist("state") or ["started"]:
        targets.update(s.strip() for s in raw.split(",") if s.strip())
    targets = targets or {"started"}
    bad = targets - WAIT_STATES
    if bad:
        raise bad_request(f"invalid_argument: invalid state(s) {sorted(bad)}; valid: {sorted(WAIT_STATES)}")
    raw_timeout = q.get("timeout")
    timeout = 60
    if raw_timeout not in (None, ""):
        try:
            timeout = int(str(raw_timeout).rstrip("s"))
        except ValueError:
            raise bad_request("invalid_argument: timeout must be an integer number of seconds") from None
        if timeout < 1 or timeout > 60:
            raise bad_request("invalid_argument: timeout must be between 1s and 60s")
    version = q.get("version") or q.get("instance_id")
    if version and version != m.instance_id and all(r.version != version for r in m.versions):
        raise not_found("machine version")

    def reached() -> bool:
        if m.state in targets:
            return True
        if "settled" in targets and m.state in STABLE_STATES:
            return True
        # An older version than the current one is no longer running.
        if version and version != m.instance_id and "stopped" in targets:
            return True
        return False

    # A machine destroyed before (or while) waiting for another state answers 404,
    # as flyctl sees when a release machine exits and is destroyed quickly
    # (superfly/flyctl#2059); GET of the machine and its events keeps working.
    if m.state == "destroyed" and not reached():
        raise not_found("machine")
    ok = await ctx.sim.engine.notifier.wait_for(lambda: reached() or m.state == "destroyed", timeout)
    if not ok:
        raise ApiError(408, f"deadline_exceeded: machine {m.id} did not reach state(s) {sorted(targets)} within {timeout}s")
    if not reached():
        raise not_found("machine")
    body: dict[str, Any] = {"ok": True, "state": m.state, "version": m.instance_id}
    if m.events:
        body["event_id"] = m.events[-1]["id"]
    return JSONResponse(body)


async def events(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app)
    try:
        limit = int(ctx.query.get("limit") or 20)
    except ValueError:
        raise bad_request("limit must be an integer") from None
    limit = max(1, min(limit, 50))
    return JSONResponse(list(reversed(m.events))[:limit])


async def versions(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app)
    return JSONResponse([{"version": r.version, "user_config": r.config} for r in reversed(m.versions)])


async def ps(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    if m.state != "started":
        return JSONResponse([])
    cmd = " ".join((m.config.get("init") or {}).get("cmd") or []) or m.config.get("image", "")
    return JSONResponse([{"pid": 1, "command": cmd, "cpu": 0, "rss": 1024 * 1024, "rtime": 0, "stime": 0, "directory": "/", "listen_sockets": []}])


# -- leases -------------------------------------------------------------------------------------
async def lease_create(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    body = await ctx.body()
    ttl = _ttl(body.get("ttl") if body.get("ttl") is not None else ctx.query.get("ttl"))
    description = body.get("description") or ""
    if not isinstance(description, str):
        raise bad_request("description must be a string")
    nonce = ctx.nonce()
    lease = m.lease
    if lease is not None and lease.active():
        if nonce != lease.nonce:
            raise ApiError(
                409,
                f"machine ID {m.id} lease currently held by {lease.owner}, expires at {rfc3339(lease.expires_at * 1000)}",
            )
        lease.expires_at = int(time.time()) + ttl  # refresh
        if description:
            lease.description = description
    else:
        lease = _new_lease(ctx, m, ttl, description)
    ctx.sim.engine.changed()
    return JSONResponse(render.lease(lease), status_code=201)


async def lease_show(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app)
    if m.lease is None or not m.lease.active():
        raise not_found("lease")
    return JSONResponse(render.lease(m.lease, with_nonce=False))


async def lease_release(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app)
    if m.lease is None or not m.lease.active():
        raise not_found("lease")
    if ctx.nonce() != m.lease.nonce:
        raise ApiError(409, f"machine ID {m.id} lease nonce mismatch")
    m.lease = None
    ctx.sim.engine.changed()
    # superfly/docs reference/machines/_machines_lease_release_resp.erb
    return JSONResponse({"status": "success", "data": {"ok": True}})


# -- metadata -------------------------------------------------------------------------------------
def _metadata(m: Machine) -> dict[str, str]:
    return m.config.setdefault("metadata", {})


async def metadata_show(ctx: Ctx) -> Response:
    m = ctx.machine(ctx.app())
    return JSONResponse(dict(m.config.get("metadata") or {}))


async def metadata_update(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    body = await ctx.body()
    want = body.get("machine_version")
    if want and want != m.instance_id:
        raise ApiError(412, f"failed_precondition: machine version {want} is not the current version")
    changes = body.get("metadata") or {}
    if not isinstance(changes, dict):
        raise bad_request("metadata must be an object")
    md = _metadata(m)
    for k, v in changes.items():
        if v is None or v == "":
            md.pop(k, None)
        elif not isinstance(v, str):
            raise bad_request("metadata values must be strings")
        else:
            md[k] = v
    ctx.sim.engine.changed()
    return Response(status_code=204)


async def metadata_get_key(ctx: Ctx) -> Response:
    m = ctx.machine(ctx.app())
    key = ctx.params["key"]
    md = m.config.get("metadata") or {}
    if key not in md:
        raise not_found("metadata key")
    return JSONResponse({"value": md[key]})


async def metadata_upsert(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    body = await ctx.body()
    value = body.get("value")
    if not isinstance(value, str):
        raise bad_request("value must be a string")
    _metadata(m)[ctx.params["key"]] = value
    ctx.sim.engine.changed()
    return Response(status_code=204)


async def metadata_delete(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    check_lease(ctx, m)
    _metadata(m).pop(ctx.params["key"], None)
    ctx.sim.engine.changed()
    return Response(status_code=204)


# -- exec ----------------------------------------------------------------------------------------------
async def exec_(ctx: Ctx) -> Response:
    app = ctx.app()
    m = ctx.machine(app, allow_destroyed=False)
    body = await ctx.body()
    command = body.get("command")
    cmd = body.get("cmd")
    if command is not None:
        if not isinstance(command, list) or not command or not all(isinstance(x, str) for x in command):
            raise bad_request("command must be a non-empty array of strings")
        argv = list(command)
    elif isinstance(cmd, str) and cmd.strip():
        argv = execsim.split(cmd)
    else:
        raise bad_request("one of command or cmd is required")
    if m.state != "started":
        raise precondition(f"machine {m.id} is not started (state: {m.state})")
    scripts = ctx.sim.images.resolve(str(m.config.get("image") or "")).exec
    result = execsim.run(app, m, argv, stdin=body.get("stdin") or "", scripts=scripts)
    ctx.sim.persist()
    return JSONResponse(result)


async def org_list(ctx: Ctx) -> Response:
    """Machines_org_list: every machine of the org's apps (OrgMachinesResponse)."""
    slug = ctx.params["org_slug"]
    ctx.require_org(slug)
    if slug not in ctx.sim.store.world.orgs:
        raise not_found("organization")
    q = ctx.query
    include_deleted = _bool(q.get("include_deleted"))
    region = q.get("region")
    states = {s for s in (q.get("state") or "").split(",") if s}
    rows = []
    for app in ctx.sim.store.world.apps.values():
        if app.org_slug != slug:
            continue
        for m in app.machines.values():
            if (m.state == "destroyed" and not include_deleted) or (region and m.region != region) or (states and m.state not in states):
                continue
            row: dict[str, Any] = {
                "id": m.id, "name": m.name, "state": m.state, "region": m.region, "app_name": app.name,
                "private_ip": m.private_ip, "version": m.instance_id,
                "created_at": rfc3339(m.created_at), "updated_at": rfc3339(m.updated_at),
            }
            if not _bool(q.get("summary")):
                row["config"] = {k: m.config[k] for k in ("image", "guest", "metadata") if k in m.config}
            rows.append((m.updated_at, row))
    rows.sort(key=lambda x: x[0])
    return JSONResponse({"machines": [r for _, r in rows]})
