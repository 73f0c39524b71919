"""In-memory state of the simulated Fly organisation(s), and its persistence.

Everything that must survive a restart lives in these pydantic models so the
whole world can be dumped to / loaded from one JSON document. Runtime-only
things (asyncio tasks, waiters) live in the engine, not here.

Secrets discipline: no secret value is ever stored. App secrets keep only a
digest; tokens keep only the sha256 of their value. So neither the state file
nor the admin state view can leak one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from . import ids


def now_ms() -> int:
    return int(time.time() * 1000)


def rfc3339(ts_ms: int | None = None) -> str:
    ts = (ts_ms if ts_ms is not None else now_ms()) / 1000
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Org(BaseModel):
    slug: str
    name: str
    id: str = Field(default_factory=lambda: ids.opaque("org_", 8))
    internal_numeric_id: int = 0
    created_at: int = Field(default_factory=now_ms)


class Lease(BaseModel):
    nonce: str
    owner: str
    description: str = ""
    expires_at: int  # unix seconds
    version: str = ""

    def active(self) -> bool:
        return self.expires_at > time.time()


class MachineVersionRecord(BaseModel):
    version: str
    config: dict[str, Any]
    image_ref: dict[str, Any] | None = None


class Machine(BaseModel):
    id: str
    name: str
    region: str
    state: str = "created"
    config: dict[str, Any] = Field(default_factory=dict)
    instance_id: str
    versions: list[MachineVersionRecord] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)  # oldest first
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)
    private_ip: str = Field(default_factory=ids.private_ip)
    lease: Lease | None = None
    cordoned: bool = False
    # Check statuses forced through the admin API: name -> {"status", "output",
    # "updated_at", "forced"}. Everything else is evaluated when read (checks.py).
    checks: dict[str, dict[str, str]] = Field(default_factory=dict)
    # How many boots crashed in a row (crash_on_boot faults, restart policy).
    crash_count: int = 0
    # Resolved from the image catalogue when the config was set, as Fly resolves
    # the digest at deploy time (None in state files from before the catalogue).
    image_ref: dict[str, Any] | None = None
    # {"exit_code", "stdout", "stderr"} of the last release command run (its
    # lines are in the app's logs too: flysim/logs.py).
    last_run: dict[str, Any] | None = None

    def mounted_volume_ids(self) -> list[str]:
        return [m["volume"] for m in self.config.get("mounts") or [] if m.get("volume")]


class Volume(BaseModel):
    id: str
    name: str
    region: str
    zone: str
    size_gb: int
    state: str = "created"
    encrypted: bool = True
    fstype: str = "ext4"
    auto_backup_enabled: bool = True
    snapshot_retention: int = 5
    attached_machine_id: str | None = None
    created_at: int = Field(default_factory=now_ms)
    # Simulated filesystem of the volume: absolute path inside the volume
    # (relative to its mount point, always starting with "/") -> content.
    files: dict[str, str] = Field(default_factory=dict)
    dirs: list[str] = Field(default_factory=list)


class Secret(BaseModel):
    name: str
    digest: str
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)


class IPAssignment(BaseModel):
    ip: str
    type: str
    region: str = "global"
    shared: bool = False
    network: str | None = None  # only for private_v6
    service_name: str | None = None
    created_at: int = Field(default_factory=now_ms)


class Certificate(BaseModel):
    hostname: str
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)
    status: str = "pending_validation"


class App(BaseModel):
    name: str
    org_slug: str
    id: str = Field(default_factory=lambda: ids.opaque("app_", 8))
    internal_numeric_id: int = 0
    network: str | None = None
    created_at: int = Field(default_factory=now_ms)
    idempotency_key: str | None = None
    machines: dict[str, Machine] = Field(default_factory=dict)
    volumes: dict[str, Volume] = Field(default_factory=dict)
    secrets: dict[str, Secret] = Field(default_factory=dict)
    secrets_version: int = 0
    ips: list[IPAssignment] = Field(default_factory=list)
    certificates: dict[str, Certificate] = Field(default_factory=dict)


class Token(BaseModel):
    """A token other than the server token. Only its sha256 is stored."""

    id: str
    name: str
    kind: str  # "org" (deploy_organization) | "app" (app deploy token)
    sha256: str
    org_slug: str
    app_name: str | None = None
    expires_at: int | None = None  # unix seconds
    revoked: bool = False
    created_at: int = Field(default_factory=now_ms)


class World(BaseModel):
    orgs: dict[str, Org] = Field(default_factory=dict)
    apps: dict[str, App] = Field(default_factory=dict)
    tokens: dict[str, Token] = Field(default_factory=dict)
    next_numeric_id: int = 1000


class Store:
    """Owns the World and its optional JSON file (atomic replace on save)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else None
        self.world = World()
        if self.path and self.path.exists():
            self.world = World.model_validate_json(self.path.read_text())

    def numeric_id(self) -> int:
        self.world.next_numeric_id += 1
        return self.world.next_numeric_id

    def ensure_org(self, slug: str, name: str | None = None) -> Org:
        org = self.world.orgs.get(slug)
        if org is None:
            org = Org(slug=slug, name=name or slug, internal_numeric_id=self.numeric_id())
            self.world.orgs[slug] = org
        return org

    def save(self) -> None:
        """Write the world atomically: temp file in the same dir, then rename."""
        if not self.path:
            return
        data = self.world.model_dump_json()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".flysim-", dir=str(self.path.parent))
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    # -- admin view ---------------------------------------------------------
    def view(self, check_statuses: Callable[[App, Machine], list[dict[str, str]]]) -> dict[str, Any]:
        """Names, ids and states only: never secret values, env values or tokens."""
        w = self.world
        apps = []
        for app in w.apps.values():
            apps.append(
                {
                    "name": app.name,
                    "id": app.id,
                    "org_slug": app.org_slug,
                    "network": app.network,
                    "machines": [
                        {
                            "id": m.id,
                            "name": m.name,
                            "state": m.state,
                            "region": m.region,
                            "image": m.config.get("image"),
                            "instance_id": m.instance_id,
                            "env_keys": sorted((m.config.get("env") or {}).keys()),
                            "metadata": dict(m.config.get("metadata") or {}),
                            "mounts": [
                                {"volume": mt.get("volume"), "path": mt.get("path")}
                                for mt in m.config.get("mounts") or []
                            ],
                            "lease_held": bool(m.lease and m.lease.active()),
                            "checks": {c["name"]: c["status"] for c in check_statuses(app, m)},
                            "last_run": m.last_run,
                        }
                        for m in app.machines.values()
                    ],
                    "volumes": [
                        {
                            "id": v.id,
                            "name": v.name,
                            "size_gb": v.size_gb,
                            "region": v.region,
                            "zone": v.zone,
                            "state": v.state,
                            "attached_machine_id": v.attached_machine_id,
                            "files": sorted(v.files.keys()),
                        }
                        for v in app.volumes.values()
                    ],
                    "secrets": {"names": sorted(app.secrets), "version": app.secrets_version},
                    "ip_assignments": [
                        {"ip": ip.ip, "type": ip.type, "network": ip.network} for ip in app.ips
                    ],
                    "certificates": sorted(app.certificates),
                }
            )
        return {
            "orgs": [
                {"slug": o.slug, "name": o.name, "id": o.id} for o in w.orgs.values()
            ],
            "apps": apps,
            "tokens": [
                {
                    "id": t.id,
                    "name": t.name,
                    "kind": t.kind,
                    "org_slug": t.org_slug,
                    "app_name": t.app_name,
                    "revoked": t.revoked,
                    "expires_at": t.expires_at,
                }
                for t in w.tokens.values()
            ],
        }


def dump_pretty(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
