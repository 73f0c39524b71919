"""Render state objects as the Machines API's JSON shapes (see the OpenAPI spec).

The spec has no `nullable` fields, so absent values are omitted rather than
sent as null (Go's `omitempty` does the same on the real API).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from .images import image_ref
from .state import App, Lease, Machine, Org, Volume, rfc3339


def empty(status: int = 200) -> Response:
    """For operations whose spec response declares no content (`content: {}`).

    The real API sends small JSON bodies on some of these (`{"ok": true}`,
    start's `{"previous_state": ...}`), but the spec documents none, so flysim
    sends no body: clients must not depend on one.
    """
    return Response(status_code=status)


def drop_none(obj: Any) -> Any:
    """Recursively remove None values from dicts (and inside lists)."""
    if isinstance(obj, dict):
        return {k: drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [drop_none(v) for v in obj if v is not None]
    return obj


def lease(lease: Lease, *, with_nonce: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "owner": lease.owner,
        "expires_at": lease.expires_at,
        "description": lease.description,
        "version": lease.version,
    }
    if with_nonce:
        data["nonce"] = lease.nonce
    # The spec's `Lease` is flat; flaps/fly-go read `{"status", "data": {...}}`.
    # Sending both keeps either kind of client working (no field has a
    # conflicting type).
    return {**data, "status": "success", "data": dict(data)}


def machine(
    m: Machine,
    *,
    checks: list[dict[str, str]] | None = None,
    include_lease: bool = False,
    nonce: str | None = None,
    summary: bool = False,
) -> dict[str, Any]:
    """`checks` is the machine's evaluated `CheckStatus` list (see checks.py)."""
    out: dict[str, Any] = {
        "id": m.id,
        "name": m.name,
        "state": m.state,
        "region": m.region,
        "instance_id": m.instance_id,
        "version": m.instance_id,
        "private_ip": m.private_ip,
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
        "host_status": "ok",
    }
    if not summary:
        out["config"] = m.config
        out["image_ref"] = m.image_ref or image_ref(m.config.get("image") or "")
        out["events"] = list(reversed(m.events[-10:]))
        out["cordoned"] = m.cordoned
        if checks:
            out["checks"] = checks
        if nonce:
            out["nonce"] = nonce
    if include_lease and m.lease and m.lease.active():
        out["lease"] = {"owner": m.lease.owner, "expires_at": m.lease.expires_at, "description": m.lease.description}
    return out


def volume(v: Volume) -> dict[str, Any]:
    block_size = 4096
    blocks = v.size_gb * (1024**3) // block_size
    used = sum(len(c.encode()) for c in v.files.values())
    out: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "state": v.state,
        "region": v.region,
        "zone": v.zone,
        "size_gb": v.size_gb,
        "encrypted": v.encrypted,
        "fstype": v.fstype,
        "created_at": rfc3339(v.created_at),
        "auto_backup_enabled": v.auto_backup_enabled,
        "snapshot_retention": v.snapshot_retention,
        "host_status": "ok",
        "type": "local",
        "block_size": block_size,
        "blocks": blocks,
        "blocks_free": blocks - (used // block_size),
        "blocks_avail": blocks - (used // block_size),
        "bytes_total": blocks * block_size,
        "bytes_used": used,
    }
    if v.attached_machine_id:
        out["attached_machine_id"] = v.attached_machine_id
        out["attached_alloc_id"] = v.attached_machine_id
    return out


def app(a: App, org: Org | None) -> dict[str, Any]:
    live = [m for m in a.machines.values() if m.state != "destroyed"]
    out: dict[str, Any] = {
        "id": a.id,
        "name": a.name,
        "internal_numeric_id": a.internal_numeric_id,
        "machine_count": len(live),
        "volume_count": len(a.volumes),
        "status": "deployed" if any(m.state == "started" for m in live) else "pending",
        "organization": {
            "slug": a.org_slug,
            "name": org.name if org else a.org_slug,
            "internal_numeric_id": org.internal_numeric_id if org else 0,
        },
    }
    # An app created without a network is on the org's default one, and Fly says so.
    out["network"] = a.network or "default"
    return out
