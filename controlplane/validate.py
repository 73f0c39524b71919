"""Phase 6 of the runbook: validate a slice through the control plane's own operations, with its org
token, so the validation and the tools cannot drift apart.

- every baseline app exists in the slice's org (the app step of ``infra_ensure_app``);
- the worker pool has no machines (``infra_list_machines``);
- the slice is running: the NFS, router and exec machines are started (``infra_list_machines``);
- every app has its Flycast address;
- a synthetic customer app can be provisioned: ``infra_ensure_app``'s preflight (token scope, name
  availability, NFS visibility), which changes nothing.

Imports neither Pulumi nor the MCP SDK: it runs inside ``pulumi up``'s provider process (see
``controlplane.phase6``) and as ``python -m controlplane validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from .errors import ControlPlaneError
from .infra import Infra, at_once
from .manifest import SERVING_ROLES

SYNTHETIC_CUSTOMER = "phase6-synthetic"


def _outcome(run: Callable[[], str | None]) -> tuple[bool, str | None]:
    """A check's result as (passed, detail): a ControlPlaneError is a failed check, not an error."""
    try:
        return True, run()
    except ControlPlaneError as exc:
        return False, str(exc)


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def check(self, what: str, run: Callable[[], str | None]) -> None:
        """Run one check; it passes unless it raises ``ControlPlaneError``. Its return value, if any,
        is added to the line."""
        self.check_all([(what, run)])

    def check_all(self, checks: list[tuple[str, Callable[[], str | None]]]) -> None:
        """Run independent checks at once (each is a read or two at Fly: together they take one round
        trip, not one each); their lines keep the given order."""
        results = at_once(*[partial(_outcome, run) for _, run in checks])
        for (what, _), (passed, detail) in zip(checks, results):
            if passed:
                self.passed.append(f"{what} ({detail})" if detail else what)
            else:
                self.failed.append(f"{what}: {detail}")

    def render(self) -> str:
        lines = [f"PASS {p}" for p in self.passed] + [f"FAIL {f}" for f in self.failed]
        lines.append(f"{len(self.passed)} passed, {len(self.failed)} failed")
        return "\n".join(lines)


def validate_slice(infra: Infra) -> Report:
    report = Report()
    apps = infra.slice.apps
    # The token check lists the org's apps: the existence checks below read that listing.
    report.check(f"the org token works in org {infra.org}", infra.check_token)
    if report.failed:  # every other check would fail the same way
        return report

    checks: list[tuple[str, Callable[[], str | None]]] = []
    for role, app in sorted(apps.items()):
        def exists(name: str = app.name) -> None:
            if infra.find_app(name) is None:
                raise ControlPlaneError(f"app {name} not found in org {infra.org}",
                                        "run `pulumi refresh` then `pulumi up` to recreate it")
        checks.append((f"app {app.name} ({role}) exists", exists))
    report.check_all(checks)

    checks = []
    pool = apps.get("worker_pool")
    if pool is not None:
        def pool_empty() -> None:
            machines = infra.list_machines(pool.name)
            if machines:
                raise ControlPlaneError(
                    f"{len(machines)} found: {', '.join(m['id'] + ' ' + m['state'] for m in machines)}",
                    "the pool's machines are fly-exec's workers; destroy them before handing the slice over")
        checks.append((f"worker pool {pool.name} has no machines", pool_empty))

    for role in SERVING_ROLES:
        if role not in apps:
            continue
        def running(name: str = apps[role].name) -> str:
            machines = infra.list_machines(name)
            if not machines:
                raise ControlPlaneError(f"app {name} has no machine", "run `pulumi up` to recreate it")
            stopped = [m for m in machines if m["state"] != "started"]
            if stopped:
                raise ControlPlaneError(f"machine(s) {', '.join(m['id'] + ' ' + m['state'] for m in stopped)}",
                                        f"start them (`fly machine start -a {name}`) and check why they stopped")
            return ", ".join(m["id"] for m in machines)
        checks.append((f"{role} app {apps[role].name} is running", running))

    for role, app in sorted(apps.items()):
        if not app.flycast:
            continue
        def flycast(name: str = app.name) -> str:
            addresses = infra.private_addresses(name)
            if not addresses:
                raise ControlPlaneError(f"app {name} has no private IPv6", "run `pulumi up` to allocate it")
            return ", ".join(addresses)
        checks.append((f"{app.name}.flycast resolves", flycast))

    def preflight() -> str:
        found = infra.preflight(SYNTHETIC_CUSTOMER, nfs=True)
        state = "exists in" if found["exists"] else "is free in"
        return f"{found['app']} {state} {found['org']}, NFS at {found['nfs']}"
    checks.append(("a synthetic customer app can be provisioned (ensure_app preflight)", preflight))
    report.check_all(checks)
    return report
