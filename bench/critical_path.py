"""The critical path of a fresh `up`: the longest chain of Fly work through the slice's dependency graph.

The graph is the engine's own (the `dependencies` of each resource in the stack's state after an `up`),
not a list written here, so a change to the components' edges changes the figure. Each resource costs
what Fly itself must spend to create it in flysim's latency profile (flysim/latency.py): one API round
trip (`request`) per call it cannot do without, plus the simulated work the call waits for (a volume's
provisioning, a machine's image pull and boot, a release command's run). Everything above that (engine,
language host, provider processes, extra look-ups) is overhead the benchmark shows as the ratio of the
real `up` to this figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flysim.latency import LatencyProfile

# What a resource's create needs from Fly, in units of the profile: (round trips, profile fields waited on).
IDEAL: dict[str, tuple[int, tuple[str, ...], str]] = {
    "organization": (1, (), "org look-up"),
    "app": (1, (), "app create"),
    "volume": (1, ("volume_create",), "volume create (provisioning)"),
    "machine": (1, ("create", "start"), "machine create, image pull and boot (the wait returns at `started`)"),
    "health_gate": (1, (), "the check run through exec"),
    "release_command": (2, ("create", "start", "stop"),
                        "release machine create, boot and run (the wait returns at its exit); its exit event"),
    "machine_file": (1, (), "file read back through exec"),
    "ip_address": (1, (), "IP assignment"),
    "certificate": (1, (), "ACME certificate request"),
    "app_secrets": (1, (), "secrets set"),
    "org_token": (1, (), "org token create"),
    "machine_sweeper": (0, (), "nothing at create (it sweeps at destroy)"),
    # Phase 6: the token check, the reads in one parallel round, the synthetic customer app's preflight.
    "validation": (3, (), "phase 6: the token check, the reads in parallel, the synthetic app's preflight"),
}

# The kind of a resource: its type name when it has one of its own (`fly:index:Machine`,
# `pulumi-python:dynamic/fly:Machine`), else (an untyped `pulumi-python:dynamic:Resource`) the outputs only
# that kind has.
_BY_OUTPUTS: list[tuple[frozenset[str], str]] = [
    (frozenset({"passed_at"}), "health_gate"),
    (frozenset({"exit_code"}), "release_command"),
    (frozenset({"parsed", "path"}), "machine_file"),
    (frozenset({"machine_id", "instance_id"}), "machine"),
    (frozenset({"volume_id"}), "volume"),
    (frozenset({"token_id"}), "org_token"),
    (frozenset({"org_id", "org_name"}), "organization"),
    (frozenset({"address"}), "ip_address"),
    (frozenset({"hostname", "status"}), "certificate"),
    (frozenset({"version", "names"}), "app_secrets"),
    (frozenset({"app_id"}), "app"),
    (frozenset({"manifest", "report"}), "validation"),
    (frozenset({"create", "stdout"}), "validation"),
]
_BY_TYPE = {"organization": "organization", "app": "app", "volume": "volume", "machine": "machine",
            "execcheck": "health_gate", "healthgate": "health_gate", "releasecommand": "release_command",
            "machinefile": "machine_file", "ipaddress": "ip_address", "certificate": "certificate",
            "appsecrets": "app_secrets", "orgtoken": "org_token", "machinesweeper": "machine_sweeper",
            "localcommand": "validation", "validation": "validation", "slicevalidation": "validation"}


def kind_of(resource: dict[str, Any]) -> str | None:
    token = str(resource.get("type", ""))
    name = token.rsplit(":", 1)[-1].lower()
    if token != "pulumi-python:dynamic:Resource" and name in _BY_TYPE:
        return _BY_TYPE[name]
    keys = set(resource.get("outputs") or {}) | set(resource.get("inputs") or {})
    for needed, kind in _BY_OUTPUTS:
        if needed <= keys:
            return kind
    if keys - {"__provider", "fly_api", "fly_token", "wait_timeout"} == {"app"}:
        return "machine_sweeper"
    return None


def cost(kind: str | None, profile: LatencyProfile) -> float:
    trips, waits, _ = IDEAL.get(kind or "", (1, (), ""))
    return trips * profile.request + sum(getattr(profile, f) for f in waits)


@dataclass
class Step:
    name: str
    kind: str
    seconds: float


@dataclass
class CriticalPath:
    seconds: float
    steps: list[Step]
    unclassified: list[str]  # resources of a kind this model doesn't know (costed as one round trip)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "unclassified": self.unclassified,
                "steps": [{"resource": s.name, "kind": s.kind, "seconds": round(s.seconds, 3)} for s in self.steps]}


def critical_path(resources: list[dict[str, Any]], profile: LatencyProfile) -> CriticalPath:
    """Longest path through the custom resources of a stack's state (``stack export``'s `resources`); a
    dependency on a component stands for all the custom resources inside it."""
    by_urn = {r["urn"]: r for r in resources}
    children: dict[str, list[str]] = {}
    for r in resources:
        if r.get("parent"):
            children.setdefault(r["parent"], []).append(r["urn"])

    def custom_within(urn: str) -> list[str]:
        r = by_urn.get(urn)
        if r is None:
            return []
        if r.get("custom"):
            return [urn]
        return [u for child in children.get(urn, []) for u in custom_within(child)]

    nodes = [r for r in resources if r.get("custom") and not str(r.get("type", "")).startswith("pulumi:")]
    deps = {r["urn"]: {d for dep in r.get("dependencies") or [] for d in custom_within(dep)} for r in nodes}
    kinds = {r["urn"]: kind_of(r) for r in nodes}
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}

    def visit(urn: str, seen: frozenset[str] = frozenset()) -> float:
        if urn in finish:
            return finish[urn]
        if urn in seen:
            raise ValueError(f"dependency cycle at {urn}")
        before = [(visit(d, seen | {urn}), d) for d in deps.get(urn, ()) if d in deps]
        start, prev = max(before, default=(0.0, None))
        finish[urn] = start + cost(kinds[urn], profile)
        via[urn] = prev
        return finish[urn]

    for r in nodes:
        visit(r["urn"])
    if not finish:
        return CriticalPath(0.0, [], [])
    end = max(finish, key=finish.__getitem__)
    chain: list[str] = []
    cursor: str | None = end
    while cursor is not None:
        chain.append(cursor)
        cursor = via[cursor]
    steps = [Step(urn.rsplit("::", 1)[-1], kinds[urn] or "?", cost(kinds[urn], profile)) for urn in reversed(chain)]
    unknown = sorted(urn.rsplit("::", 1)[-1] for urn, k in kinds.items() if k is None)
    return CriticalPath(finish[end], steps, unknown)
