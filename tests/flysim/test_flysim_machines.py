from __future__ import annotations

import re
import time

import httpx
import pytest

from flysim.latency import LatencyProfile
from flysim.testing import FlysimServer
from flysim_helpers import make_machine, make_volume

ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def url(app: str, mid: str = "", suffix: str = "") -> str:
    return f"/v1/apps/{app}/machines" + (f"/{mid}" if mid else "") + suffix


def test_create_starts_machine(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, name="web-1", config={"image": "registry.fly.io/x:abc", "env": {"A": "1"}, "metadata": {"role": "web"}})
    assert re.fullmatch(r"[0-9a-f]{14}", m["id"])
    assert ULID.fullmatch(m["instance_id"]) and m["version"] == m["instance_id"]
    assert m["name"] == "web-1" and m["region"] == "ams"
    assert m["config"]["image"] == "registry.fly.io/x:abc"
    assert m["config"]["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}
    assert m["image_ref"]["registry"] == "registry.fly.io" and m["image_ref"]["tag"] == "abc"
    r = client.get(url(app_name, m["id"], "/wait"), params={"state": "started", "timeout": 5})
    assert r.status_code == 200 and r.json()["ok"] is True
    got = client.get(url(app_name, m["id"])).json()
    assert got["state"] == "started"
    types = [e["type"] for e in client.get(url(app_name, m["id"], "/events")).json()]
    assert types == ["start", "launch"]  # newest first


def test_skip_launch_then_start_stop(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, skip_launch=True)
    assert m["state"] == "created"
    r = client.post(url(app_name, m["id"], "/start"))
    # superfly/docs reference/machines/_machines_start_resp.erb; fly-go's Start decodes it
    assert r.status_code == 200 and r.json() == {"previous_state": "created", "migrated": False, "new_host": ""}
    assert client.get(url(app_name, m["id"], "/wait")).status_code == 200
    assert client.post(url(app_name, m["id"], "/stop"), json={"signal": "SIGTERM"}).status_code == 200
    r = client.get(url(app_name, m["id"], "/wait"), params={"state": "stopped"})
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    events = client.get(url(app_name, m["id"], "/events")).json()
    exit_ev = next(e for e in events if e["type"] == "exit")
    assert exit_ev["request"]["exit_event"]["exit_code"] == 0


def test_duplicate_machine_name_conflicts(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, name="dup")
    r = client.post(url(app_name), json={"name": "dup", "region": "ams", "config": {"image": "x"}})
    assert r.status_code == 409 and m["id"] in r.json()["error"]


def test_create_requires_image(client: httpx.Client, app_name: str) -> None:
    assert client.post(url(app_name), json={"config": {}}).status_code == 400
    assert client.post(url(app_name), json={}).status_code == 400


def test_update_new_version_and_current_version_guard(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    r = client.post(url(app_name, m["id"]), json={"config": {"image": "nginx:1.26"}, "current_version": m["instance_id"]})
    assert r.status_code == 200, r.text
    up = r.json()
    assert up["instance_id"] != m["instance_id"] and up["config"]["image"] == "nginx:1.26"
    stale = client.post(url(app_name, m["id"]), json={"config": {"image": "nginx:1.27"}, "current_version": m["instance_id"]})
    assert stale.status_code == 409
    assert client.get(url(app_name, m["id"])).json()["config"]["image"] == "nginx:1.26"
    assert client.get(url(app_name, m["id"], "/wait"), params={"instance_id": up["instance_id"]}).status_code == 200
    versions = client.get(url(app_name, m["id"], "/versions")).json()
    assert [v["version"] for v in versions] == [up["instance_id"], m["instance_id"]]


def test_update_of_stopped_machine_with_skip_launch_stays_stopped(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    client.post(url(app_name, m["id"], "/stop"))
    client.get(url(app_name, m["id"], "/wait"), params={"state": "stopped"})
    up = client.post(url(app_name, m["id"]), json={"config": {"image": "x:2"}, "skip_launch": True}).json()
    assert up["state"] == "stopped"
    up = client.post(url(app_name, m["id"]), json={"config": {"image": "x:3"}}).json()
    assert client.get(url(app_name, m["id"], "/wait")).status_code == 200


def test_delete_running_needs_force(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    r = client.delete(url(app_name, m["id"]))
    assert r.status_code == 412
    assert r.json()["error"].startswith("failed_precondition:")
    assert client.delete(url(app_name, m["id"]), params={"force": "true"}).status_code == 200
    assert client.get(url(app_name, m["id"], "/wait"), params={"state": "destroyed"}).status_code == 200
    assert client.get(url(app_name)).json() == []
    listed = client.get(url(app_name), params={"include_deleted": "true"}).json()
    assert [x["state"] for x in listed] == ["destroyed"]
    # A stopped machine can be destroyed without force.
    m2 = make_machine(client, app_name)
    client.post(url(app_name, m2["id"], "/stop"))
    assert client.delete(url(app_name, m2["id"])).status_code == 200


def test_list_filters(client: httpx.Client, app_name: str) -> None:
    a = make_machine(client, app_name, config={"image": "x", "metadata": {"slice": "a"}})
    make_machine(client, app_name, config={"image": "x", "metadata": {"slice": "b"}}, region="fra")
    assert [m["id"] for m in client.get(url(app_name), params={"metadata.slice": "a"}).json()] == [a["id"]]
    assert len(client.get(url(app_name), params={"region": "fra"}).json()) == 1
    assert len(client.get(url(app_name), params={"state": "started,stopped"}).json()) == 2


def test_mounts_must_match_region_and_be_free(client: httpx.Client, app_name: str) -> None:
    v = make_volume(client, app_name, region="ams")
    mount = {"image": "x", "mounts": [{"volume": v["id"], "path": "/data"}]}
    r = client.post(url(app_name), json={"region": "fra", "config": mount})
    assert r.status_code == 400
    first = make_machine(client, app_name, config=mount)
    assert first["config"]["mounts"][0]["volume"] == v["id"]
    r = client.post(url(app_name), json={"region": "ams", "config": mount})
    assert r.status_code == 412
    missing = client.post(url(app_name), json={"region": "ams", "config": {"image": "x", "mounts": [{"volume": "vol_nope", "path": "/d"}]}})
    assert missing.status_code == 404


def test_wait_validation_and_timeout(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    assert client.get(url(app_name, m["id"], "/wait"), params={"timeout": 61}).status_code == 400
    assert client.get(url(app_name, m["id"], "/wait"), params={"state": "bogus"}).status_code == 400
    assert client.get(url(app_name, m["id"], "/wait"), params={"state": "settled"}).status_code == 200
    t0 = time.monotonic()
    r = client.get(url(app_name, m["id"], "/wait"), params={"state": "suspended", "timeout": 1})
    assert r.status_code == 408
    assert 0.9 <= time.monotonic() - t0 < 5


def test_suspend_and_resume(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    assert client.post(url(app_name, m["id"], "/suspend")).status_code == 200
    assert client.get(url(app_name, m["id"], "/wait"), params={"state": "suspended"}).json()["state"] == "suspended"
    assert client.post(url(app_name, m["id"], "/start")).status_code == 200
    assert client.get(url(app_name, m["id"], "/wait")).status_code == 200


def test_restart(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    assert client.post(url(app_name, m["id"], "/restart")).status_code == 200
    assert client.get(url(app_name, m["id"], "/wait")).status_code == 200
    assert "restart" in [e["type"] for e in client.get(url(app_name, m["id"], "/events")).json()]


def test_lease_semantics(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    r = client.post(url(app_name, m["id"], "/lease"), json={"ttl": 60, "description": "deploy"})
    assert r.status_code == 201
    lease = r.json()
    nonce = lease["nonce"]
    assert lease["data"]["nonce"] == nonce and lease["expires_at"] > time.time()
    # Someone else (no nonce) cannot take it or write to the machine.
    other = client.post(url(app_name, m["id"], "/lease"), json={"ttl": 60})
    assert other.status_code == 409
    assert "lease currently held by" in other.json()["error"]
    assert client.post(url(app_name, m["id"], "/stop")).status_code == 409
    assert client.post(url(app_name, m["id"]), json={"config": {"image": "y"}}).status_code == 409
    assert client.post(url(app_name, m["id"], "/stop"), headers={"fly-machine-lease-nonce": "wrong"}).status_code == 409
    # The holder can.
    h = {"fly-machine-lease-nonce": nonce}
    assert client.post(url(app_name, m["id"]), json={"config": {"image": "y"}}, headers=h).status_code == 200
    shown = client.get(url(app_name, m["id"], "/lease")).json()
    assert shown["description"] == "deploy" and "nonce" not in shown
    assert client.post(url(app_name, m["id"], "/lease"), json={"ttl": 120}, headers=h).status_code == 201  # refresh
    assert client.delete(url(app_name, m["id"], "/lease"), headers={"fly-machine-lease-nonce": "x"}).status_code == 409
    assert client.delete(url(app_name, m["id"], "/lease"), headers=h).status_code == 200
    assert client.get(url(app_name, m["id"], "/lease")).status_code == 404
    assert client.post(url(app_name, m["id"], "/stop")).status_code == 200


def test_create_with_lease_ttl_returns_nonce(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, lease_ttl=30)
    assert m["nonce"]
    assert client.post(url(app_name, m["id"], "/stop")).status_code == 409
    assert client.post(url(app_name, m["id"], "/stop"), headers={"fly-machine-lease-nonce": m["nonce"]}).status_code == 200


def test_metadata_endpoints(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, config={"image": "x", "metadata": {"a": "1"}})
    assert client.post(url(app_name, m["id"], "/metadata/b"), json={"value": "2"}).status_code == 204
    assert client.get(url(app_name, m["id"], "/metadata")).json() == {"a": "1", "b": "2"}
    assert client.get(url(app_name, m["id"], "/metadata/b")).json() == {"value": "2"}
    assert client.delete(url(app_name, m["id"], "/metadata/a")).status_code == 204
    assert client.get(url(app_name, m["id"], "/metadata/a")).status_code == 404


def test_unknown_machine_404(client: httpx.Client, app_name: str) -> None:
    r = client.get(url(app_name, "00000000000000"))
    assert r.status_code == 404 and r.json() == {"error": "machine not found"}


def test_fast_latency_shows_transitions_and_wait_wakes_up() -> None:
    with FlysimServer(latency="fast", rate_limit=False) as fly, fly.client() as c:
        assert c.post("/v1/apps", json={"app_name": "fast", "org_slug": "personal"}).status_code == 201
        m = c.post("/v1/apps/fast/machines", json={"region": "ams", "config": {"image": "x"}}).json()
        assert m["state"] == "created"
        t0 = time.monotonic()
        r = c.get(f"/v1/apps/fast/machines/{m['id']}/wait", params={"state": "started", "timeout": 10})
        assert r.status_code == 200
        assert time.monotonic() - t0 < 2
        c.post(f"/v1/apps/fast/machines/{m['id']}/stop")
        assert c.get(f"/v1/apps/fast/machines/{m['id']}").json()["state"] in ("stopping", "stopped")
        assert c.get(f"/v1/apps/fast/machines/{m['id']}/wait", params={"state": "stopped"}).status_code == 200


def test_volume_stays_bound_while_machine_is_destroyed() -> None:
    # Custom timings: a long destroy gives the test a wide, load-proof window.
    slow_destroy = LatencyProfile("slow-destroy", 0, 0, 0, 0, 0, 0, 0.6, 0, 0)
    with FlysimServer(latency=slow_destroy, rate_limit=False) as fly, fly.client() as c:
        c.post("/v1/apps", json={"app_name": "vb", "org_slug": "personal"})
        v = c.post("/v1/apps/vb/volumes", json={"name": "d", "region": "ams", "size_gb": 1}).json()
        m = c.post("/v1/apps/vb/machines", json={"region": "ams", "config": {"image": "x", "mounts": [{"volume": v["id"], "path": "/d"}]}}).json()
        assert c.delete(f"/v1/apps/vb/machines/{m['id']}?force=true").status_code == 200
        assert c.get(f"/v1/apps/vb/machines/{m['id']}").json()["state"] == "destroying"
        r = c.delete(f"/v1/apps/vb/volumes/{v['id']}")
        assert r.status_code == 412 and m["id"] in r.json()["error"]
        assert c.get(f"/v1/apps/vb/machines/{m['id']}/wait", params={"state": "destroyed"}).status_code == 200
        assert c.delete(f"/v1/apps/vb/volumes/{v['id']}").status_code == 200


@pytest.mark.parametrize("state", ["started", "stopped"])
def test_wait_default_and_repeated_states(client: httpx.Client, app_name: str, state: str) -> None:
    m = make_machine(client, app_name)
    if state == "stopped":
        client.post(url(app_name, m["id"], "/stop"))
    r = client.get(url(app_name, m["id"], "/wait") + "?state=started&state=stopped")
    assert r.status_code == 200 and r.json()["state"] == state
