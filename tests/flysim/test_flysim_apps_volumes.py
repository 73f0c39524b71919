from __future__ import annotations

import re

import httpx

from flysim.testing import FlysimServer

from flysim_helpers import make_machine, make_volume


def test_app_create_get_list_delete(client: httpx.Client) -> None:
    r = client.post("/v1/apps", json={"app_name": "one", "org_slug": "personal", "network": "net-one"})
    assert r.status_code == 201
    assert set(r.json()) == {"id", "created_at"}
    got = client.get("/v1/apps/one").json()
    assert got["name"] == "one" and got["organization"]["slug"] == "personal" and got["network"] == "net-one"
    client.post("/v1/apps", json={"app_name": "two", "org_slug": "acme"})
    listed = client.get("/v1/apps", params={"org_slug": "personal"}).json()
    assert [a["name"] for a in listed["apps"]] == ["one"] and listed["total_apps"] == 1
    assert client.delete("/v1/apps/one").status_code == 202
    assert client.get("/v1/apps/one").status_code == 404


def test_app_names_are_global(client: httpx.Client) -> None:
    assert client.post("/v1/apps", json={"app_name": "taken", "org_slug": "personal"}).status_code == 201
    r = client.post("/v1/apps", json={"app_name": "taken", "org_slug": "acme"})
    assert r.status_code == 422
    assert r.json()["status"] == "name_taken"
    assert "taken" in r.json()["error"]


def test_app_create_unknown_org_and_bad_body(client: httpx.Client) -> None:
    assert client.post("/v1/apps", json={"app_name": "x1", "org_slug": "nope"}).status_code == 404
    assert client.post("/v1/apps", json={"org_slug": "personal"}).status_code == 400
    assert client.post("/v1/apps", json={"app_name": "Bad_Name", "org_slug": "personal"}).status_code == 422


def test_app_create_idempotency_key(client: httpx.Client) -> None:
    body = {"app_name": "idem", "org_slug": "personal", "idempotency_key": "k1"}
    first = client.post("/v1/apps", json=body)
    again = client.post("/v1/apps", json=body)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/apps", json={**body, "app_name": "idem-2"})
    assert other.status_code == 422


def test_app_delete_destroys_machines_and_volumes(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    vol = make_volume(client, app_name)
    make_machine(client, app_name, config={"image": "img", "mounts": [{"volume": vol["id"], "path": "/data"}]})
    assert client.delete(f"/v1/apps/{app_name}").status_code == 202
    assert fly.state()["apps"] == []
    # The name is free again.
    assert client.post("/v1/apps", json={"app_name": app_name, "org_slug": "acme"}).status_code == 201


def test_volume_create_shape(client: httpx.Client, app_name: str) -> None:
    v = make_volume(client, app_name, size_gb=3)
    assert re.fullmatch(r"vol_[a-z0-9]{16}", v["id"])
    assert re.fullmatch(r"[0-9a-f]{4}", v["zone"])
    assert v["region"] == "ams" and v["size_gb"] == 3 and v["name"] == "data"
    assert "attached_machine_id" not in v  # no nulls: the spec has no nullable fields
    assert client.get(f"/v1/apps/{app_name}/volumes/{v['id']}").json()["id"] == v["id"]
    assert [x["id"] for x in client.get(f"/v1/apps/{app_name}/volumes").json()] == [v["id"]]


def test_volume_extend_only_grows(client: httpx.Client, app_name: str) -> None:
    v = make_volume(client, app_name, size_gb=2)
    r = client.put(f"/v1/apps/{app_name}/volumes/{v['id']}/extend", json={"size_gb": 5})
    assert r.status_code == 200 and r.json()["volume"]["size_gb"] == 5
    assert "needs_restart" in r.json()
    assert client.put(f"/v1/apps/{app_name}/volumes/{v['id']}/extend", json={"size_gb": 5}).status_code == 400
    assert client.put(f"/v1/apps/{app_name}/volumes/{v['id']}/extend", json={"size_gb": 1}).status_code == 400


def test_volume_delete_refused_while_bound(client: httpx.Client, app_name: str) -> None:
    v = make_volume(client, app_name)
    m = make_machine(client, app_name, config={"image": "img", "mounts": [{"volume": v["id"], "path": "/data"}]})
    assert client.get(f"/v1/apps/{app_name}/volumes/{v['id']}").json()["attached_machine_id"] == m["id"]
    r = client.delete(f"/v1/apps/{app_name}/volumes/{v['id']}")
    assert r.status_code == 412
    assert "volume is currently bound to machine" in r.json()["error"]
    assert client.delete(f"/v1/apps/{app_name}/machines/{m['id']}?force=true").status_code == 200
    client.get(f"/v1/apps/{app_name}/machines/{m['id']}/wait", params={"state": "destroyed"})
    assert client.delete(f"/v1/apps/{app_name}/volumes/{v['id']}").status_code == 200
    assert client.get(f"/v1/apps/{app_name}/volumes/{v['id']}").status_code == 404


def test_unknown_app_and_volume_404(client: httpx.Client, app_name: str) -> None:
    assert client.get("/v1/apps/ghost/volumes").json() == {"error": "app not found"}
    assert client.get(f"/v1/apps/{app_name}/volumes/vol_0000000000000000").status_code == 404
