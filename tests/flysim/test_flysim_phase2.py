"""Secrets, IPs, certificates, deploy tokens, GraphQL tokens and scopes, exec, checks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flysim.testing import FlysimServer
from flysim_helpers import CREATE_TOKEN, DELETE_TOKEN, ORG_ID, gql, make_machine, make_volume, org_token


# -- secrets ------------------------------------------------------------------------------
def test_secrets_set_list_unset_never_show_values(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    A = f"/v1/apps/{app_name}"
    r = client.post(A + "/secrets", json={"values": {"DB_PASSWORD": "hunter2", "API_KEY": "k-123"}})
    assert r.status_code == 200
    assert r.json()["version"] == 1
    listed = client.get(A + "/secrets").json()["secrets"]
    assert [s["name"] for s in listed] == ["API_KEY", "DB_PASSWORD"]
    assert all(set(s) == {"name", "digest", "created_at", "updated_at"} for s in listed)
    digest = listed[1]["digest"]
    r = client.post(A + "/secrets", json={"values": {"DB_PASSWORD": "changed", "API_KEY": None}})
    assert r.json()["version"] == 2
    listed = client.get(A + "/secrets").json()["secrets"]
    assert [s["name"] for s in listed] == ["DB_PASSWORD"] and listed[0]["digest"] != digest
    assert client.post(A + "/secrets/ONE", json={"value": "1"}).status_code == 201
    assert client.delete(A + "/secrets/ONE").json()["version"] == 4
    assert client.get(A + "/secrets/ONE").status_code == 404
    everything = str(fly.state()) + str(fly.calls()) + client.get(A + "/secrets").text
    for value in ("hunter2", "k-123", "changed"):
        assert value not in everything


def test_min_secrets_version_is_enforced(client: httpx.Client, app_name: str) -> None:
    A = f"/v1/apps/{app_name}"
    body = {"region": "ams", "config": {"image": "x"}, "min_secrets_version": 1}
    assert client.post(A + "/machines", json=body).status_code == 400
    client.post(A + "/secrets", json={"values": {"S": "v"}})
    m = client.post(A + "/machines", json=body)
    assert m.status_code == 200
    up = client.post(A + f"/machines/{m.json()['id']}", json={"config": {"image": "y"}, "min_secrets_version": 2})
    assert up.status_code == 400


# -- ips / certs / deploy tokens -----------------------------------------------------------------
def test_ip_assignments(client: httpx.Client, app_name: str) -> None:
    A = f"/v1/apps/{app_name}/ip_assignments"
    v4 = client.post(A, json={"type": "shared_v4"}).json()
    assert v4["shared"] is True and v4["ip"].count(".") == 3
    assert client.post(A, json={"type": "shared_v4"}).json()["ip"] == v4["ip"]
    v6 = client.post(A, json={"type": "v6"}).json()
    assert ":" in v6["ip"] and "network" not in v6
    p6 = client.post(A, json={"type": "private_v6", "network": "slice-net"}).json()
    assert p6["ip"].startswith("fdaa:") and p6["network"] == {"name": "slice-net", "org_slug": "personal"}
    assert client.post(A, json={"type": "v6", "network": "x"}).status_code == 400
    assert client.post(A, json={"type": "bogus"}).status_code == 400
    assert {i["ip"] for i in client.get(A).json()["ips"]} == {v4["ip"], v6["ip"], p6["ip"]}
    assert client.delete(f"{A}/{p6['ip']}").status_code == 204
    assert client.delete(f"{A}/{p6['ip']}").status_code == 404


def test_acme_certificates(client: httpx.Client, app_name: str) -> None:
    A = f"/v1/apps/{app_name}/certificates"
    r = client.post(A + "/acme", json={"hostname": "shop.example.com"})
    assert r.status_code == 201 and r.json()["hostname"] == "shop.example.com"
    assert client.get(A + "/shop.example.com").json()["status"] == "active"
    assert client.get(A).json()["total_count"] == 1
    client.post("/v1/apps", json={"app_name": "other-app", "org_slug": "personal"})
    assert client.post("/v1/apps/other-app/certificates/acme", json={"hostname": "shop.example.com"}).status_code == 422
    assert client.delete(A + "/shop.example.com").status_code == 204
    assert client.get(A + "/shop.example.com").status_code == 404


def test_app_deploy_token_scope(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    client.post("/v1/apps", json={"app_name": "neighbour", "org_slug": "personal"})
    token = client.post(f"/v1/apps/{app_name}/deploy_token", json={"expiry": "1h"}).json()["token"]
    assert token.startswith("FlyV1 ")
    with fly.client(token=token) as app_c:
        # Header is "Bearer FlyV1 fm2_..." here: flysim accepts the doubled scheme too.
        assert app_c.get(f"/v1/apps/{app_name}").status_code == 200
        make_machine(app_c, app_name)
        assert app_c.get("/v1/apps/neighbour").status_code == 401
        assert app_c.get("/v1/apps/ghost").status_code == 401
        assert app_c.post("/v1/apps", json={"app_name": "nope", "org_slug": "personal"}).status_code == 401
        assert app_c.post(f"/v1/apps/{app_name}/deploy_token", json={}).status_code == 401
    assert token.split(" ", 1)[1] not in str(fly.state())


# -- GraphQL + org tokens -------------------------------------------------------------------------
def test_graphql_organization_and_create(client: httpx.Client) -> None:
    org = gql(client, ORG_ID, slug="acme")["data"]["organization"]
    assert org["slug"] == "acme" and org["type"] == "SHARED" and org["id"]
    missing = gql(client, ORG_ID, slug="nope")
    assert missing["data"]["organization"] is None and missing["errors"]
    out = gql(client, 'mutation { createOrganization(input: {name: "Slice Seven"}) { organization { id slug name } token } }')
    created = out["data"]["createOrganization"]
    assert created["organization"]["slug"] == "slice-seven" and created["token"]
    again = gql(client, 'mutation { createOrganization(input: {name: "Slice Seven"}) { organization { id } } }')
    assert again["errors"]
    assert client.post("/v1/apps", json={"app_name": "s7-app", "org_slug": "slice-seven"}).status_code == 201


def test_org_token_scope_and_revocation(fly: FlysimServer, client: httpx.Client) -> None:
    client.post("/v1/apps", json={"app_name": "acme-app", "org_slug": "acme"})
    client.post("/v1/apps", json={"app_name": "mine", "org_slug": "personal"})
    tok = org_token(client, "acme", expiry="720h")
    assert tok["profile"] == "deploy_organization" and tok["tokenHeader"] == f"FlyV1 {tok['token']}"
    with fly.client(headers={"Authorization": tok["tokenHeader"]}) as oc:
        assert oc.get("/v1/apps/acme-app").status_code == 200
        assert oc.post("/v1/apps", json={"app_name": "acme-2", "org_slug": "acme"}).status_code == 201
        assert [a["name"] for a in oc.get("/v1/apps", params={"org_slug": "acme"}).json()["apps"]] == ["acme-2", "acme-app"]
        assert oc.get("/v1/apps/mine").status_code == 401
        assert oc.get("/v1/apps", params={"org_slug": "personal"}).status_code == 401
        assert oc.post("/v1/apps", json={"app_name": "x-9", "org_slug": "personal"}).status_code == 401
        assert gql(oc, ORG_ID, slug="acme")["data"]["organization"]["slug"] == "acme"
        assert gql(oc, ORG_ID, slug="personal")["data"]["organization"] is None
        # Scoped tokens cannot mint tokens.
        org_id = gql(oc, ORG_ID, slug="acme")["data"]["organization"]["id"]
        denied = gql(oc, CREATE_TOKEN, input={"name": "t", "organizationId": org_id, "profile": "deploy_organization"})
        assert denied["errors"]
    out = gql(client, DELETE_TOKEN, input={"id": tok["id"]})
    assert out["data"]["deleteLimitedAccessToken"]["token"] == tok["id"]
    with fly.client(headers={"Authorization": tok["tokenHeader"]}) as oc:
        assert oc.get("/v1/apps/acme-app").status_code == 401
        assert oc.post("/graphql", json={"query": "{ organization(slug: \"acme\") { id } }"}).status_code == 401
    # Token values never appear in the admin views.
    assert tok["token"] not in str(fly.state()) + str(fly.calls())


def test_delete_token_by_value(fly: FlysimServer, client: httpx.Client) -> None:
    tok = org_token(client, "acme")
    gql(client, DELETE_TOKEN, input={"token": tok["token"]})
    with fly.client(token=tok["token"]) as oc:
        assert oc.get("/v1/apps", params={"org_slug": "acme"}).status_code == 401


def test_unsupported_profile(client: httpx.Client) -> None:
    org_id = gql(client, ORG_ID, slug="acme")["data"]["organization"]["id"]
    out = gql(client, CREATE_TOKEN, input={"name": "t", "organizationId": org_id, "profile": "read_organization"})
    assert out["errors"]


# -- exec ----------------------------------------------------------------------------------------
@pytest.fixture
def mounted(client: httpx.Client, app_name: str) -> tuple[str, dict]:
    v = make_volume(client, app_name)
    m = make_machine(client, app_name, config={"image": "x", "env": {"MODE": "prod"}, "mounts": [{"volume": v["id"], "path": "/data"}]})
    return f"/v1/apps/{app_name}/machines/{m['id']}", v


def ex(client: httpx.Client, path: str, *argv: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"command": list(argv)} if argv else kw
    r = client.post(path + "/exec", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_exec_command_set(client: httpx.Client, mounted: tuple[str, dict]) -> None:
    M, _ = mounted
    assert ex(client, M, "true")["exit_code"] == 0
    assert ex(client, M, "false")["exit_code"] == 1
    assert ex(client, M, "test", "-d", "/data")["exit_code"] == 0
    assert ex(client, M, "test", "-e", "/data/nope")["exit_code"] == 1
    assert ex(client, M, "mkdir", "-p", "/data/a/b")["exit_code"] == 0
    assert ex(client, M, "mkdir", "/data/x/y")["exit_code"] == 1
    r = ex(client, M, "sh", "-c", "echo one > /data/a/b/f && echo two >> /data/a/b/f; cat /data/a/b/f")
    assert r == {"exit_code": 0, "stdout": "one\ntwo\n", "stderr": ""}
    assert ex(client, M, "test", "-f", "/data/a/b/f")["exit_code"] == 0
    assert ex(client, M, "ls", "/data/a/b")["stdout"] == "f\n"
    assert ex(client, M, "ls", "/")["exit_code"] == 0 and "data" in ex(client, M, "ls", "/")["stdout"].split()
    assert ex(client, M, "rm", "/data/a")["exit_code"] == 1
    assert ex(client, M, "rm", "-r", "/data/a")["exit_code"] == 0
    assert ex(client, M, "test", "-e", "/data/a/b/f")["exit_code"] == 1
    assert ex(client, M, "cat", "/data/missing")["exit_code"] == 1
    assert ex(client, M, "printenv", "MODE")["stdout"] == "prod\n"
    assert ex(client, M, "sh", "-c", "false || echo recovered")["stdout"] == "recovered\n"
    assert ex(client, M, "sh", "-c", "false && echo never")["stdout"] == ""
    assert ex(client, M, "curl", "x")["exit_code"] == 127
    assert ex(client, M, cmd="echo deprecated cmd")["stdout"] == "deprecated cmd\n"


def test_volume_files_survive_machine_replacement(client: httpx.Client, app_name: str, mounted: tuple[str, dict]) -> None:
    M, v = mounted
    ex(client, M, "sh", "-c", "echo keep > /data/k; echo lose > /tmp/l")
    machine = client.get(M).json()
    client.post(M, json={"config": {**machine["config"], "image": "x:2"}})
    client.get(M + "/wait")
    assert ex(client, M, "cat", "/data/k")["stdout"] == "keep\n"
    # Same volume mounted by a new machine elsewhere in the tree.
    client.delete(M + "?force=true")
    client.get(M + "/wait", params={"state": "destroyed"})
    m2 = make_machine(client, app_name, config={"image": "x", "mounts": [{"volume": v["id"], "path": "/mnt/vol"}]})
    assert ex(client, f"/v1/apps/{app_name}/machines/{m2['id']}", "cat", "/mnt/vol/k")["stdout"] == "keep\n"


def test_exec_needs_started_machine(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, skip_launch=True)
    r = client.post(f"/v1/apps/{app_name}/machines/{m['id']}/exec", json={"command": ["true"]})
    assert r.status_code == 412


# -- health checks -----------------------------------------------------------------------------------
def test_checks_follow_state_and_admin_override(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, config={"image": "x", "checks": {"http": {"type": "http", "port": 8080, "path": "/health"}}})
    M = f"/v1/apps/{app_name}/machines/{m['id']}"
    (check,) = client.get(M).json()["checks"]
    assert check["name"] == "http" and check["status"] == "passing"
    fly.set_check(app_name, m["id"], "http", "critical", "connection refused")
    assert client.get(M).json()["checks"][0] == {**client.get(M).json()["checks"][0], "status": "critical", "output": "connection refused"}
    client.post(M + "/stop")
    client.get(M + "/wait", params={"state": "stopped"})
    assert client.get(M).json()["checks"][0]["status"] == "critical"


def test_org_lists(client: httpx.Client, app_name: str) -> None:
    v = make_volume(client, app_name)
    m = make_machine(client, app_name, config={"image": "x", "mounts": [{"volume": v["id"], "path": "/d"}]})
    ms = client.get("/v1/orgs/personal/machines").json()["machines"]
    assert [(x["id"], x["app_name"]) for x in ms] == [(m["id"], app_name)]
    vs = client.get("/v1/orgs/personal/volumes").json()["volumes"]
    assert [(x["id"], x["attached_machine_id"]) for x in vs] == [(v["id"], m["id"])]
    assert client.get("/v1/orgs/acme/machines").json()["machines"] == []


def test_tokens_survive_restart_with_state_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = str(tmp_path / "state.json")
    with FlysimServer(token="root-zz9", orgs=["personal", "acme"], state_file=state, rate_limit=False) as fly, fly.client() as c:
        tok = org_token(c, "acme")
        c.post("/v1/apps", json={"app_name": "persisted", "org_slug": "acme"})
        deploy = c.post("/v1/apps/persisted/deploy_token", json={}).json()["token"]
    text = open(state).read()
    assert tok["token"] not in text and deploy.split()[1] not in text and "root-zz9" not in text
    with FlysimServer(token="root-zz9", orgs=["personal", "acme"], state_file=state, rate_limit=False) as fly:
        with fly.client(headers={"Authorization": tok["tokenHeader"]}) as oc:
            assert oc.get("/v1/apps/persisted").status_code == 200
        with fly.client(headers={"Authorization": deploy}) as dc:
            assert dc.get("/v1/apps/persisted").status_code == 200
