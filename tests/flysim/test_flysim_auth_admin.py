from __future__ import annotations

import httpx

from flysim.testing import FlysimServer


def test_requests_without_token_are_401(fly: FlysimServer) -> None:
    r = httpx.get(fly.url + "/v1/apps?org_slug=personal")
    assert r.status_code == 401
    assert "error" in r.json()
    r = httpx.get(fly.url + "/v1/apps?org_slug=personal", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = httpx.post(fly.url + "/graphql", json={"query": "{ __typename }"})
    assert r.status_code == 401


def test_bearer_and_flyv1_schemes_both_work(fly: FlysimServer) -> None:
    for scheme in ("Bearer", "FlyV1"):
        r = httpx.get(fly.url + "/v1/apps?org_slug=personal", headers={"Authorization": f"{scheme} {fly.token}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"apps": [], "total_apps": 0}


def test_token_never_echoed(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    bodies = [
        client.get(f"/v1/apps/{app_name}").text,
        httpx.get(fly.url + "/v1/apps/x", headers={"Authorization": f"Bearer {fly.token}x"}).text,
        httpx.get(fly.url + "/__flysim/state").text,
        httpx.get(fly.url + "/__flysim/calls").text,
    ]
    for body in bodies:
        assert fly.token not in body


def test_calls_are_recorded_with_operation_ids(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    fly.clear_calls()
    client.get(f"/v1/apps/{app_name}")
    client.get(f"/v1/apps/{app_name}/machines")
    client.get("/v1/nonsense")
    calls = fly.calls()
    assert [c["operation"] for c in calls] == ["Apps_show", "Machines_list", "unknown"]
    first = dict(calls[0])
    arrived, answered = first.pop("started"), first.pop("at")  # when the request came in and was answered
    assert first == {"method": "GET", "path": f"/v1/apps/{app_name}", "status": 200, "operation": "Apps_show",
                     "mutating": False}
    assert arrived <= answered <= calls[1]["started"]
    assert calls[2]["status"] == 404
    fly.clear_calls()
    assert fly.calls() == []


def test_state_view_shape(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    r = client.post(f"/v1/apps/{app_name}/machines", json={"region": "ams", "config": {"image": "img:1", "env": {"PASSWORD": "hunter2"}}})
    assert r.status_code == 200
    state = fly.state()
    assert {o["slug"] for o in state["orgs"]} == {"personal", "acme"}
    (app,) = state["apps"]
    assert app["name"] == app_name and app["org_slug"] == "personal"
    (m,) = app["machines"]
    assert set(m) >= {"id", "name", "state", "region", "image", "instance_id"}
    assert m["state"] == "started" and m["image"] == "img:1"
    assert "hunter2" not in str(state)


def test_call_log_tells_graphql_queries_from_mutations(fly: FlysimServer, client: httpx.Client) -> None:
    fly.clear_calls()
    client.post("/graphql", json={"query": "query { organization(slug: \"personal\") { id } }"})
    client.post("/graphql", json={"query": "mutation { createOrganization(input: {name: \"gq-org\"}) { organization { id } } }"})
    graphql_calls = [c for c in fly.calls() if c["path"] == "/graphql"]
    assert [(c["graphql"], c["mutating"]) for c in graphql_calls] == [("query", False), ("mutation", True)]
