"""Machine checks (config.checks -> CheckStatus) and the `<app>.fly.dev` stand-in."""

from __future__ import annotations

import httpx
import pytest

from flysim.testing import FlysimServer
from flysim_helpers import make_machine

CHECKS = {
    "alive": {"type": "tcp", "port": 8080, "interval": "15s", "timeout": "2s"},
    "health": {"type": "http", "port": 8080, "path": "/health", "method": "GET", "grace_period": "5s"},
}
RELAY = "registry.fly.io/artifact-relay:1.0"


def _machine(client: httpx.Client, app: str, image: str = RELAY, **kw: object) -> dict:
    return make_machine(client, app, config={"image": image, "checks": CHECKS}, **kw)


def _statuses(body: dict) -> dict[str, tuple[str, str]]:
    return {c["name"]: (c["status"], c["output"]) for c in body.get("checks", [])}


def _public(fly: FlysimServer, app: str, path: str = "/health", method: str = "GET") -> httpx.Response:
    # As `curl --resolve <app>.fly.dev:443:127.0.0.1` would: flysim's address, the app's Host.
    return httpx.request(method, fly.url + path, headers={"Host": f"{app}.fly.dev"}, timeout=10)


def test_started_healthy_image_reports_passing_checks_in_show_and_list(client: httpx.Client, app_name: str) -> None:
    m = _machine(client, app_name)
    assert m["state"] == "started"
    shown = client.get(f"/v1/apps/{app_name}/machines/{m['id']}").json()
    assert [c["name"] for c in shown["checks"]] == ["alive", "health"]
    assert {c["status"] for c in shown["checks"]} == {"passing"}
    assert all(set(c) == {"name", "status", "output", "updated_at"} for c in shown["checks"])
    listed = client.get(f"/v1/apps/{app_name}/machines").json()
    assert _statuses(listed[0]) == _statuses(shown)


def test_unhealthy_tag_fails_its_checks_with_the_catalogue_output(client: httpx.Client, app_name: str) -> None:
    m = _machine(client, app_name, image="registry.fly.io/artifact-relay:unhealthy")
    assert _statuses(m)["health"] == ("critical", "GET /health: 503 Service Unavailable")


def test_checks_of_a_machine_that_is_not_started_are_critical(client: httpx.Client, app_name: str) -> None:
    m = _machine(client, app_name, skip_launch=True)
    assert m["state"] == "created"
    assert {s for s, _ in _statuses(m).values()} == {"critical"}
    client.post(f"/v1/apps/{app_name}/machines/{m['id']}/start")
    assert {s for s, _ in _statuses(client.get(f"/v1/apps/{app_name}/machines/{m['id']}").json()).values()} == {"passing"}
    client.post(f"/v1/apps/{app_name}/machines/{m['id']}/stop")
    stopped = client.get(f"/v1/apps/{app_name}/machines/{m['id']}").json()
    assert _statuses(stopped)["health"] == ("critical", "machine is stopped")


def test_a_machine_without_checks_reports_none(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, config={"image": RELAY})
    assert "checks" not in m


@pytest.mark.parametrize("bad", [{"c": {"type": "grpc"}}, {"c": {"type": "http", "port": "80"}}, {"c": "http"}, ["c"]])
def test_malformed_checks_are_refused_before_anything_is_created(client: httpx.Client, app_name: str, bad: object) -> None:
    r = client.post(f"/v1/apps/{app_name}/machines", json={"config": {"image": RELAY, "checks": bad}})
    assert r.status_code == 400 and "config.checks" in r.json()["error"]
    assert client.get(f"/v1/apps/{app_name}/machines").json() == []


def test_a_float_port_is_refused_as_flyds_go_decoder_refuses_it(client: httpx.Client, app_name: str) -> None:
    # Pulumi hands dynamic providers numbers as floats; Fly's Go decoder does not coerce 8080.0 to an int.
    r = client.post(f"/v1/apps/{app_name}/machines",
                    json={"config": {"image": RELAY, "checks": {"h": {"type": "http", "port": 8080.0}}}})
    assert r.status_code == 400
    assert r.json()["error"].startswith("json: cannot unmarshal number 8080.0 into Go struct field")


def test_check_failure_fault_fails_an_apps_checks_until_removed(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    m = _machine(client, app_name)
    other = client.post("/v1/apps", json={"app_name": "other-app", "org_slug": "personal"})
    assert other.status_code == 201
    om = _machine(client, "other-app")
    fault = fly.add_fault(kind="check_failure", app=app_name, check="health", message="GET /health: 500")
    got = _statuses(client.get(f"/v1/apps/{app_name}/machines/{m['id']}").json())
    assert got == {"alive": ("passing", "Success"), "health": ("critical", "GET /health: 500")}
    assert {s for s, _ in _statuses(client.get(f"/v1/apps/other-app/machines/{om['id']}").json()).values()} == {"passing"}
    assert fly.state()["apps"][0]["machines"][0]["checks"] == {"alive": "passing", "health": "critical"}
    fly.remove_fault(fault["id"])
    assert {s for s, _ in _statuses(client.get(f"/v1/apps/{app_name}/machines/{m['id']}").json()).values()} == {"passing"}


def test_check_failure_fault_refuses_count_and_rate(fly: FlysimServer) -> None:
    r = httpx.post(fly.url + "/__flysim/faults", json={"kind": "check_failure", "app": "a", "count": 1})
    assert r.status_code == 400


def test_catalogue_health_is_validated() -> None:
    with pytest.raises(ValueError, match="health"):
        FlysimServer(images={"images": {"x": {"health": {"status": "sick"}}}}).start()


# -- <app>.fly.dev -----------------------------------------------------------------------------
def _public_ip(client: httpx.Client, app: str, kind: str = "shared_v4") -> None:
    r = client.post(f"/v1/apps/{app}/ip_assignments", json={"type": kind})
    assert r.status_code == 200, r.text


def test_public_health_answers_ok_for_a_started_healthy_machine_behind_a_public_ip(
    fly: FlysimServer, client: httpx.Client, app_name: str
) -> None:
    _public_ip(client, app_name, "v6")
    _machine(client, app_name)
    fly.clear_calls()
    r = _public(fly, app_name)
    assert r.status_code == 200 and r.json() == {"status": "ok", "app": app_name}
    # any port in the Host header
    r = httpx.get(fly.url + "/health", headers={"Host": f"{app_name}.fly.dev:443"})
    assert r.status_code == 200
    calls = fly.calls()
    assert {k: v for k, v in calls[0].items() if k not in ("at", "started")} == {
        "method": "GET", "path": "/health", "status": 200, "operation": "PublicHTTP", "mutating": False,
        "host": f"{app_name}.fly.dev"}


def test_public_health_names_why_it_is_unavailable(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    r = _public(fly, app_name)
    assert (r.status_code, r.text.strip()) == (503, "no public IP")
    _public_ip(client, app_name, "private_v6")
    assert _public(fly, app_name).text.strip() == "no public IP"  # Flycast is not public
    _public_ip(client, app_name)
    assert (_public(fly, app_name).status_code, _public(fly, app_name).text.strip()) == (503, "no started machine")
    m = _machine(client, app_name, image="registry.fly.io/artifact-relay:unhealthy")
    r = _public(fly, app_name)
    assert r.status_code == 503 and r.text.startswith("checks failing: ") and "GET /health: 503" in r.text
    # A healthy image: passes, until a fault fails the app's checks at runtime.
    client.post(f"/v1/apps/{app_name}/machines/{m['id']}", json={"config": {"image": RELAY, "checks": CHECKS}})
    assert _public(fly, app_name).status_code == 200
    fly.add_fault(kind="check_failure", app=app_name, message="connection refused")
    r = _public(fly, app_name)
    assert r.status_code == 503 and "connection refused" in r.text
    fly.clear_faults()
    client.post(f"/v1/apps/{app_name}/machines/{m['id']}/stop")
    assert _public(fly, app_name).text.strip() == "no started machine"


def test_public_host_other_paths_methods_and_apps(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    assert _public(fly, app_name, "/").status_code == 404
    assert _public(fly, app_name, "/v1/apps").status_code == 404  # not the API, whatever the path
    r = _public(fly, app_name, method="POST")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert _public(fly, "no-such-app").status_code == 404
    # no token needed, and the Machines API on flysim's own host is unaffected
    assert client.get(f"/v1/apps/{app_name}").status_code == 200
