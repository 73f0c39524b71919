"""Phase 7: write the handover file, ``artifacts/provisioning/<stack>-<timestamp>.json``, from the
stack outputs (secret outputs left out) plus live state read from Fly: each app's machines with their
current state and recent events, its volumes, and for the router, exec and NFS apps a snapshot of their
logs read as ``fly logs --no-tail`` reads them (the runbook's phase 7 confirms a clean boot of router and
exec from them; the NFS app's carries its self-mount check's ``mount ok``)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fly import FlyClient, FlyConnection, FlyError

EVENTS_PER_MACHINE = 20
LOG_ROLES = ("nfs", "router", "exec")
LOG_LINES = 50


def live_state(manifest: dict[str, Any], connection: FlyConnection) -> dict[str, Any]:
    live: dict[str, Any] = {}
    with FlyClient(connection) as fly:
        for role, app in sorted((manifest.get("apps") or {}).items()):
            name = app.get("name", "")
            entry: dict[str, Any] = {"name": name}
            try:
                entry["machines"] = [
                    {"id": m.id, "name": m.name, "state": m.state, "region": m.region, "instance_id": m.instance_id,
                     "updated_at": m.updated_at,
                     "image": m.config.get("image"),
                     "events": [e.model_dump(exclude_none=True) for e in
                                fly.list_machine_events(name, m.id)[:EVENTS_PER_MACHINE]]}
                    for m in fly.list_machines(name)]
                entry["volumes"] = [{"id": v.id, "name": v.name, "zone": v.zone, "size_gb": v.size_gb,
                                     "state": v.state, "attached_machine_id": v.attached_machine_id}
                                    for v in fly.list_volumes(name)]
                entry["ips"] = [ip.ip for ip in fly.list_ips(name)]
            except FlyError as exc:
                entry["error"] = str(exc)
            if role in LOG_ROLES:
                try:  # apart: logs out of reach still leave the machines' state in the file
                    entry["logs"] = [e.line() for e in fly.app_logs(name, max_lines=LOG_LINES)]
                except FlyError as exc:
                    entry["logs_error"] = str(exc)
            live[role] = entry
    return live


def write_handover(stack: str, outputs: dict[str, Any], secret_names: set[str], connection: FlyConnection,
                   out_dir: Path) -> Path:
    public = {k: v for k, v in outputs.items() if k not in secret_names}
    now = datetime.now(timezone.utc)
    document = {"stack": stack, "written_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "manifest": public,
                "live": live_state(public, connection)}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stack}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path
