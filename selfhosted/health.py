"""``HealthGate``: the deploy is a success only when this passes.

For every machine: the restart policy and the checks read back through the Machines API (the checks
Fly runs from the machine config's ``checks``) must all be ``passing``; then the relay's public
``/health`` must answer 200 with ``{"status": "ok"}``. A failure names each machine, check and probe
with what Fly said, and fails the ``up``.

A dynamic provider (importable, holds no client or secret: the token comes from the provider
process's ``FLY_API_TOKEN``, so no credential is an input or output of this resource).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import httpx
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from fly.client import FlyClient
from fly.connection import FlyConnection
from fly.errors import FlyError

POLL_START, POLL_MAX = 0.25, 2.0
# A check still critical this long after we first saw it critical is a failure, not a machine still
# starting; each machine's spec may say otherwise (``critical_after``: its checks' grace period plus
# one interval on Fly).
CRITICAL_FOR_SECONDS = 6.0


class HealthCheckFailed(Exception):
    pass


def _poll_intervals() -> Any:
    interval = POLL_START
    while True:
        yield interval
        interval = min(interval * 2, POLL_MAX)


def check_machines(client: FlyClient, machines: list[dict[str, Any]], deadline: float) -> list[dict[str, Any]]:
    """Wait until every machine's checks pass; the statuses read last, or HealthCheckFailed."""
    critical_since: dict[tuple[str, str], float] = {}
    intervals = _poll_intervals()
    while True:
        problems: list[str] = []
        statuses: list[dict[str, Any]] = []
        failed = False
        for spec in machines:
            app, machine_id = spec["app"], spec["machine_id"]
            machine = client.get_machine(app, machine_id)
            policy = ((machine.config.get("restart") or {}).get("policy")) or "(none)"
            if policy != spec["restart_policy"]:
                raise HealthCheckFailed(f"{app}: machine {machine_id} has restart policy {policy!r} on Fly, "
                                        f"expected {spec['restart_policy']!r}")
            if machine.state != "started":
                problems.append(f"{app}: machine {machine_id} is {machine.state}, not started")
            reported = {c.name: c for c in (machine.checks or [])}
            for name in spec["checks"]:
                check = reported.get(name)
                status = check.status if check else "not reported yet"
                output = (check.output or "").strip() if check else ""
                statuses.append({"app": app, "machine_id": machine_id, "check": name, "status": status,
                                 "output": output[:300]})
                if status == "passing":
                    critical_since.pop((app, name), None)
                    continue
                detail = f"{app}: check {name!r} is {status}" + (f" ({output[:300]})" if output else "")
                problems.append(detail)
                if status == "critical":
                    first = critical_since.setdefault((app, name), time.monotonic())
                    patience = float(spec.get("critical_after") or CRITICAL_FOR_SECONDS)
                    failed = failed or time.monotonic() - first >= patience
        if not problems:
            return statuses
        if failed or time.monotonic() >= deadline:
            raise HealthCheckFailed("machine checks did not pass: " + "; ".join(problems))
        time.sleep(min(next(intervals), max(0.0, deadline - time.monotonic())))


def probe(url: str, host: str | None, app: str, deadline: float) -> dict[str, Any]:
    """GET the relay's public /health until it answers 200 ``{"status": "ok"}``, or HealthCheckFailed."""
    headers = {"Host": host} if host else {}
    shown = f"https://{host}/health" if host else url
    intervals = _poll_intervals()
    with httpx.Client(timeout=10.0, follow_redirects=False) as http:
        while True:
            try:
                response = http.get(url, headers=headers)
                is_json = "json" in response.headers.get("content-type", "")
                body: Any = response.json() if is_json else {}
                if response.status_code == 200 and isinstance(body, dict) and body.get("status") == "ok":
                    return {"url": shown, "status_code": 200, "checked_at": _now()}
                reason = ((body.get("reason") or body.get("error") or body.get("status")) if isinstance(body, dict)
                          else None) or (" ".join(response.text.split())[:300] if not is_json else None)
                problem = f"HTTP {response.status_code}" + (f": {reason}" if reason else "")
            except (httpx.HTTPError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise HealthCheckFailed(f"{app}: GET {shown} did not answer 200 ok ({problem})")
            time.sleep(min(next(intervals), max(0.0, deadline - time.monotonic())))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class HealthGateProvider(ResourceProvider):
    def _verify(self, props: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + float(props.get("timeout") or 120)
        connection = FlyConnection.resolve(api_base_url=props["api_base_url"] or None,
                                           flaps_base_url=props["flaps_base_url"] or None)
        try:
            with FlyClient(connection) as client:
                statuses = check_machines(client, props["machines"], deadline)
        except FlyError as exc:
            raise HealthCheckFailed(f"could not read the machines' checks: {exc}") from None
        probe_spec = props["probe"]
        probed = probe(probe_spec["url"], probe_spec.get("host") or None, probe_spec["app"], deadline)
        return {**props, "checks": statuses, "probe_result": probed, "passed_at": _now()}

    def create(self, props: dict[str, Any]) -> CreateResult:
        outputs = self._verify(props)
        return CreateResult(f"health-{props['probe']['app']}", outputs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("machines", "probe", "api_base_url", "flaps_base_url")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], stables=[k for k in keys if k not in changed])

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._verify(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class HealthGate(Resource):
    """Outputs: checks (each machine check's status as read back), probe_result, passed_at."""

    checks: pulumi.Output[list[dict[str, Any]]]
    probe_result: pulumi.Output[dict[str, Any]]
    passed_at: pulumi.Output[str]

    def __init__(self, resource_name: str, *, machines: pulumi.Input[list[dict[str, Any]]], probe_app: str,
                 probe_url: str, probe_host: str | None, api_base_url: str, flaps_base_url: str,
                 timeout: int = 120, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"machines": machines, "probe": {"app": probe_app, "url": probe_url, "host": probe_host or ""},
                 "api_base_url": api_base_url, "flaps_base_url": flaps_base_url, "timeout": timeout,
                 "checks": None, "probe_result": None, "passed_at": None}
        super().__init__(HealthGateProvider(), resource_name, props, opts)
