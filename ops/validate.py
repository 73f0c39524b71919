"""Phase 6 of the runbook: validate a slice as its control plane will use it, with its org token.

Checks that every baseline app exists, that the worker pool has no machines, that the NFS app is
reachable on the org's private network (a private IPv6, so `<app>.flycast` resolves), and that a
synthetic customer app can be created and removed with the org token (the token's scope).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from fly import FlyClient, FlyConnection, FlyError


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def check(self, ok: bool, what: str, problem: str = "") -> None:
        (self.passed if ok else self.failed).append(what if ok else f"{what}: {problem}")

    def render(self) -> str:
        lines = [f"PASS {p}" for p in self.passed] + [f"FAIL {f}" for f in self.failed]
        lines.append(f"{len(self.passed)} passed, {len(self.failed)} failed")
        return "\n".join(lines)


def validate_slice(manifest: dict[str, Any], connection: FlyConnection) -> Report:
    """``manifest`` is the slice's handover manifest (its stack outputs)."""
    report = Report()
    org_entry = manifest.get("org")
    org = org_entry.get("slug") if isinstance(org_entry, dict) else org_entry
    apps: dict[str, dict[str, Any]] = manifest.get("apps") or {}
    prefix = manifest.get("slice") or manifest.get("prefix") or ""
    with FlyClient(connection) as fly:
        for role, app in sorted(apps.items()):
            name = app.get("name", "")
            try:
                live = fly.find_app(name)
                report.check(live is not None, f"app {name} ({role}) exists", "not found")
                if live is not None and org:
                    live_org = live.organization.slug if live.organization else None
                    report.check(live_org in (None, org), f"app {name} is in org {org}", f"it is in {live_org}")
            except FlyError as exc:
                report.check(False, f"app {name} ({role}) exists", str(exc))
        pool = apps.get("worker_pool")
        if pool:
            try:
                machines = [m for m in fly.list_machines(pool["name"]) if m.state != "destroyed"]
                report.check(not machines, f"worker pool {pool['name']} has no machines",
                             f"{len(machines)} found: {', '.join(m.id for m in machines)}")
            except FlyError as exc:
                report.check(False, "worker pool has no machines", str(exc))
        for role, app in sorted(apps.items()):
            if "flycast" not in app:
                continue
            name = app.get("name", "")
            try:
                private = [ip.ip for ip in fly.list_ips(name) if ip.ip.startswith("fdaa:")]
                report.check(bool(private), f"{name}.flycast resolves (private IPv6 {', '.join(private)})",
                             f"app {name} ({role}) has no private IPv6")
            except FlyError as exc:
                report.check(False, f"{name}.flycast resolves", str(exc))
        if org:
            synthetic = f"{prefix}-synthetic-{secrets.token_hex(3)}"[:63]
            try:
                fly.create_app(synthetic, org)
                report.check(True, f"synthetic customer app {synthetic} created in {org}")
            except FlyError as exc:
                report.check(False, f"synthetic customer app can be created in {org}", str(exc))
            finally:
                try:
                    fly.delete_app(synthetic)
                    report.check(fly.find_app(synthetic) is None, f"synthetic customer app {synthetic} removed",
                                 "still there after delete")
                except FlyError as exc:
                    report.check(False, f"synthetic customer app {synthetic} removed", str(exc))
    return report
