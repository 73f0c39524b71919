from __future__ import annotations

import httpx
import pytest

from flysim.testing import FlysimServer
from flysim_helpers import make_machine


def test_status_fault_before_commit(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    fly.add_fault(operation="Machines_create", kind="status", status=503, retry_after=2, count=1)
    r = client.post(f"/v1/apps/{app_name}/machines", json={"region": "ams", "config": {"image": "x"}})
    assert r.status_code == 503 and r.headers["retry-after"] == "2" and "error" in r.json()
    assert client.get(f"/v1/apps/{app_name}/machines").json() == []
    # count=1: the next one goes through, and the fault is used up.
    make_machine(client, app_name)
    assert fly.faults() == []


def test_after_commit_fault_keeps_the_mutation(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    fly.add_fault(operation="Machines_create", app=app_name, kind="status", status=500, after_commit=True, count=1)
    r = client.post(f"/v1/apps/{app_name}/machines", json={"name": "only-once", "region": "ams", "config": {"image": "x"}})
    assert r.status_code == 500
    listed = client.get(f"/v1/apps/{app_name}/machines").json()
    assert [m["name"] for m in listed] == ["only-once"]


def test_fail_fault_drops_the_connection(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    fly.add_fault(operation="Apps_show", kind="fail", count=1)
    with pytest.raises(httpx.TransportError):
        client.get(f"/v1/apps/{app_name}")
    assert client.get(f"/v1/apps/{app_name}").status_code == 200


def test_crash_on_boot(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    fly.add_fault(kind="crash_on_boot", app=app_name)
    m = make_machine(client, app_name, config={"image": "x", "restart": {"policy": "no"}})
    r = client.get(f"/v1/apps/{app_name}/machines/{m['id']}/wait", params={"state": "settled"})
    assert r.json()["state"] == "stopped"
    exits = [e for e in client.get(f"/v1/apps/{app_name}/machines/{m['id']}/events").json() if e["type"] == "exit"]
    assert exits and exits[0]["request"]["exit_event"]["exit_code"] != 0
    fly.clear_faults()
    # With retries left, a crash that happens once is recovered by the restart policy.
    fly.add_fault(kind="crash_on_boot", app=app_name, count=1)
    m2 = make_machine(client, app_name)
    assert client.get(f"/v1/apps/{app_name}/machines/{m2['id']}/wait").status_code == 200


def test_invalid_fault_rejected(fly: FlysimServer) -> None:
    r = httpx.post(fly.url + "/__flysim/faults", json={"kind": "explode"})
    assert r.status_code == 400


def test_rate_limit_429_with_retry_after() -> None:
    with FlysimServer() as fly, fly.client() as c:
        assert c.post("/v1/apps", json={"app_name": "rl", "org_slug": "personal"}).status_code == 201
        codes = [c.get("/v1/apps/rl/machines").status_code for _ in range(4)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        r = c.get("/v1/apps/rl/machines")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # Other actions have their own buckets.
        assert c.get("/v1/apps/rl/volumes").status_code == 200
        fly.reset_rate_limits()
        assert c.get("/v1/apps/rl/machines").status_code == 200


def test_hang_fault_then_504(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    fly.add_fault(operation="Volumes_list", kind="hang", seconds=0.2, count=1)
    r = client.get(f"/v1/apps/{app_name}/volumes")
    assert r.status_code == 504


def test_fail_after_commit_loses_response_but_keeps_app(fly: FlysimServer, client: httpx.Client) -> None:
    fly.add_fault(operation="Apps_create", kind="fail", after_commit=True, count=1)
    with pytest.raises(httpx.TransportError):
        client.post("/v1/apps", json={"app_name": "ghosted", "org_slug": "personal"})
    # The client retries: the name is now taken, and the app is there to adopt.
    r = client.post("/v1/apps", json={"app_name": "ghosted", "org_slug": "personal"})
    assert r.status_code == 422 and r.json()["status"] == "name_taken"
    assert client.get("/v1/apps/ghosted").status_code == 200


def test_rate_fault_and_listing(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    f = fly.add_fault(operation="Apps_show", app=app_name, kind="status", status=429, retry_after=1, rate=1.0, count=2)
    assert f["kind"] == "status" and f["remaining"] == 2
    assert [client.get(f"/v1/apps/{app_name}").status_code for _ in range(3)] == [429, 429, 200]
    fly.add_fault(operation="Apps_show", app="someone-else", kind="status", status=500)
    assert client.get(f"/v1/apps/{app_name}").status_code == 200
    assert len(fly.faults()) == 1
    fly.clear_faults()
    assert fly.faults() == []


def test_graphql_fault_singles_out_one_mutation(fly: FlysimServer, client: httpx.Client) -> None:
    """A client lists an org's tokens, then mints one: a `graphql_field` fault hits the mint alone, and with
    after_commit the token exists though its answer was lost."""
    from flysim_helpers import CREATE_TOKEN, ORG_ID, gql

    fly.add_fault(operation="GraphQL", graphql_field="createLimitedAccessToken", kind="status", status=504,
                  after_commit=True, count=1)
    org_id = gql(client, ORG_ID, slug="personal")["data"]["organization"]["id"]  # a query: untouched
    inp = {"name": "lost-answer", "organizationId": org_id, "profile": "deploy_organization"}
    r = client.post("/graphql", json={"query": CREATE_TOKEN, "variables": {"input": inp}})
    assert r.status_code == 504
    assert fly.faults() == []
    assert [t["name"] for t in fly.state()["tokens"] if t["name"] == "lost-answer"] == ["lost-answer"]


def test_graphql_field_is_refused_where_it_cannot_match(fly: FlysimServer) -> None:
    with pytest.raises(httpx.HTTPStatusError) as exc:
        fly.add_fault(operation="Apps_create", graphql_field="createLimitedAccessToken")
    assert exc.value.response.status_code in (400, 422)
