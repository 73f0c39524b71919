"""Issue 12: flysim answers as Fly does (each item with the source it follows)."""

from __future__ import annotations

import httpx
import pytest
from graphql import build_schema, parse, validate

from flysim.testing import FlysimServer
from flysim_helpers import gql, make_machine
from tests.reference import fly_reference

M = "/v1/apps/{app}/machines/{id}"


def _url(app: str, mid: str, suffix: str = "") -> str:
    return M.format(app=app, id=mid) + suffix


# -- bodies of the lifecycle actions (superfly/docs reference/machines/*_resp.erb; fly-go flaps.Start) --
def test_start_answers_previous_state_as_fly_go_decodes_it(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    client.post(_url(app_name, m["id"], "/stop"))
    r = client.post(_url(app_name, m["id"], "/start"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"previous_state": "stopped", "migrated": False, "new_host": ""}
    # already started: still JSON, previous_state says so
    assert client.post(_url(app_name, m["id"], "/start")).json()["previous_state"] == "started"


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("POST", "/cordon", None), ("POST", "/uncordon", None), ("POST", "/signal", {"signal": "SIGHUP"}),
    ("POST", "/restart", None), ("POST", "/suspend", None), ("POST", "/stop", {"signal": "SIGTERM"}),
    ("DELETE", "", None),
])
def test_actions_answer_ok_true(client: httpx.Client, app_name: str, method: str, suffix: str, body: object) -> None:
    m = make_machine(client, app_name)
    if method == "DELETE":
        client.post(_url(app_name, m["id"], "/stop"))
    r = client.request(method, _url(app_name, m["id"], suffix), json=body)
    assert (r.status_code, r.json()) == (200, {"ok": True})


def test_lease_release_answers_as_documented(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    nonce = client.post(_url(app_name, m["id"], "/lease"), json={"ttl": 30}).json()["nonce"]
    r = client.delete(_url(app_name, m["id"], "/lease"), headers={"fly-machine-lease-nonce": nonce})
    assert (r.status_code, r.json()) == (200, {"status": "success", "data": {"ok": True}})


# -- signal --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [{}, [], None, True, "SIGNOPE", 99, 9.0])
def test_malformed_signal_is_a_400_not_a_500(client: httpx.Client, app_name: str, bad: object) -> None:
    m = make_machine(client, app_name)
    for suffix in ("/signal", "/stop"):
        if bad is None and suffix == "/stop":
            continue  # stop without a signal is fine
        r = client.post(_url(app_name, m["id"], suffix), json={"signal": bad})
        assert r.status_code == 400 and "signal" in r.json()["error"], (suffix, r.text)
    assert client.get(_url(app_name, m["id"])).json()["state"] == "started"


def test_fly_go_kill_sends_signal_9(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    assert client.post(_url(app_name, m["id"], "/signal"), json={"signal": 9}).json() == {"ok": True}
    assert client.get(_url(app_name, m["id"])).json()["state"] == "stopped"


# -- states ----------------------------------------------------------------------------------------------
def test_an_old_version_reports_replaced(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name)
    client.post(_url(app_name, m["id"]), json={"config": {"image": "nginx:1.26"}})
    old = client.get(_url(app_name, m["id"]), params={"version": m["instance_id"]}).json()
    assert old["state"] == "replaced" and old["config"]["image"] == "nginx:1.25"
    assert client.get(_url(app_name, m["id"])).json()["state"] == "started"


def test_restart_goes_through_restarting() -> None:
    from flysim.latency import LatencyProfile

    slow = LatencyProfile("slow-stop", 0, 0, 0.05, 0.3, 0, 0, 0, 0, 0)
    with FlysimServer(latency=slow, rate_limit=False) as fly, fly.client() as c:
        c.post("/v1/apps", json={"app_name": "r", "org_slug": "personal"})
        m = c.post("/v1/apps/r/machines", json={"config": {"image": "nginx"}}).json()
        assert c.get(_url("r", m["id"], "/wait"), params={"state": "started"}).status_code == 200
        assert c.post(_url("r", m["id"], "/restart")).json() == {"ok": True}
        assert c.get(_url("r", m["id"])).json()["state"] == "restarting"
        assert c.get(_url("r", m["id"], "/wait"), params={"state": "started"}).json()["state"] == "started"
        events = [e["type"] for e in c.get(_url("r", m["id"], "/events")).json()]
        assert events[:3] == ["start", "exit", "restart"]


# -- defaults -----------------------------------------------------------------------------------------------
def test_volume_default_size_is_3_gb(client: httpx.Client, app_name: str) -> None:
    r = client.post(f"/v1/apps/{app_name}/volumes", json={"name": "data", "region": "ams"})
    assert r.status_code == 200 and r.json()["size_gb"] == 3


def test_app_network_defaults_to_default(client: httpx.Client, app_name: str) -> None:
    listed = client.get("/v1/apps", params={"org_slug": "personal"}).json()["apps"]
    assert listed[0]["network"] == "default"
    assert client.get(f"/v1/apps/{app_name}").json()["network"] == "default"


# -- wrong methods ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/v1/apps", "GET, HEAD, POST"),
    ("PATCH", "/v1/apps/slice-app", "DELETE, GET, HEAD"),
    ("GET", "/v1/apps/slice-app/machines/0123456789abcd/start", "POST"),
    ("DELETE", "/v1/apps/slice-app/machines/0123456789abcd/metadata", "GET, HEAD, PATCH, PUT"),
    ("GET", "/graphql", "POST"),
])
def test_wrong_method_is_405_json_with_every_allowed_method(client: httpx.Client, app_name: str, method: str,
                                                            path: str, allow: str) -> None:
    r = client.request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert r.headers["content-type"] == "application/json" and "not allowed" in r.json()["error"]


# -- GraphQL -------------------------------------------------------------------------------------------------------
FLYCTL_SCHEMA = build_schema(fly_reference("flyctl-schema.graphql").read_text())

APP = """query($name: String) { app(name: $name) { id name internalId hostname deployed status network
  organization { slug } sharedIpAddress secrets { name digest createdAt }
  ipAddresses { nodes { id address type region network { name } } totalCount } } }"""
REGIONS = "query { platform { regions { code name gatewayAvailable requiresPaidPlan } requestRegion } }"
ALLOCATE = """mutation($input: AllocateIPAddressInput!) { allocateIpAddress(input: $input) {
  ipAddress { id address type region network { name } } app { name } } }"""
RELEASE = "mutation($input: ReleaseIPAddressInput!) { releaseIpAddress(input: $input) { app { name } } }"
SET = """mutation($input: SetSecretsInput!) { setSecrets(input: $input) {
  app { secrets { name digest } } release { id version } } }"""
UNSET = "mutation($input: UnsetSecretsInput!) { unsetSecrets(input: $input) { app { secrets { name } } release { id } } }"


@pytest.mark.parametrize("document", [APP, REGIONS, ALLOCATE, RELEASE, SET, UNSET])
def test_documents_are_valid_against_flyctls_schema(document: str) -> None:
    assert validate(FLYCTL_SCHEMA, parse(document)) == []


def test_graphql_app_and_platform(client: httpx.Client, app_name: str) -> None:
    out = gql(client, APP, name=app_name)
    assert "errors" not in out, out
    app = out["data"]["app"]
    assert app["id"] == app_name and app["name"] == app_name and app["hostname"] == f"{app_name}.fly.dev"
    assert app["organization"]["slug"] == "personal" and app["network"] == "default" and not app["deployed"]
    missing = gql(client, APP, name="no-such-app")
    assert missing["data"]["app"] is None and missing["errors"][0]["message"] == "Could not find App"
    regions = gql(client, REGIONS)["data"]["platform"]["regions"]
    assert {"code": "ams", "name": "Amsterdam, Netherlands", "gatewayAvailable": True,
            "requiresPaidPlan": False} in regions and len(regions) == 18


def test_graphql_ips_share_state_with_rest(client: httpx.Client, app_name: str) -> None:
    out = gql(client, ALLOCATE, input={"appId": app_name, "type": "private_v6", "network": "n1"})
    assert "errors" not in out, out
    ip = out["data"]["allocateIpAddress"]["ipAddress"]
    assert ip["type"] == "private_v6" and ip["network"] == {"name": "n1"}
    rest = client.get(f"/v1/apps/{app_name}/ip_assignments").json()["ips"]
    assert [i["ip"] for i in rest] == [ip["address"]]
    v4 = client.post(f"/v1/apps/{app_name}/ip_assignments", json={"type": "shared_v4"}).json()
    app = gql(client, APP, name=app_name)["data"]["app"]
    assert app["sharedIpAddress"] == v4["ip"] and app["ipAddresses"]["totalCount"] == 2
    # release by id, and by app + address
    assert "errors" not in gql(client, RELEASE, input={"ipAddressId": ip["id"]})
    assert "errors" not in gql(client, RELEASE, input={"appId": app_name, "ip": v4["ip"]})
    assert client.get(f"/v1/apps/{app_name}/ip_assignments").json()["ips"] == []
    again = gql(client, RELEASE, input={"appId": app_name, "ip": v4["ip"]})
    assert again["errors"][0]["message"] == "Could not find IPAddress"
    bad = gql(client, ALLOCATE, input={"appId": app_name, "type": "v4", "network": "n1"})
    assert "network is only valid" in bad["errors"][0]["message"]


def test_graphql_secrets_share_state_with_rest(client: httpx.Client, app_name: str) -> None:
    out = gql(client, SET, input={"appId": app_name, "secrets": [{"key": "A", "value": "1"}, {"key": "B", "value": "2"}]})
    assert "errors" not in out, out
    assert [s["name"] for s in out["data"]["setSecrets"]["app"]["secrets"]] == ["A", "B"]
    assert out["data"]["setSecrets"]["release"] is None
    rest = client.get(f"/v1/apps/{app_name}/secrets").json()["secrets"]
    assert {s["name"]: s["digest"] for s in rest} == {s["name"]: s["digest"] for s in out["data"]["setSecrets"]["app"]["secrets"]}
    # REST -> GraphQL
    client.post(f"/v1/apps/{app_name}/secrets", json={"values": {"C": "3"}})
    assert [s["name"] for s in gql(client, APP, name=app_name)["data"]["app"]["secrets"]] == ["A", "B", "C"]
    out = gql(client, UNSET, input={"appId": app_name, "keys": ["A"]})
    assert [s["name"] for s in out["data"]["unsetSecrets"]["app"]["secrets"]] == ["B", "C"]
    out = gql(client, SET, input={"appId": app_name, "replaceAll": True, "secrets": [{"key": "D", "value": "4"}]})
    assert [s["name"] for s in out["data"]["setSecrets"]["app"]["secrets"]] == ["D"]
    # each mutation is one secrets version, as on REST
    assert client.get(f"/v1/apps/{app_name}").status_code == 200
    version = client.post(f"/v1/apps/{app_name}/secrets", json={"values": {}}).json()["version"]
    assert version == 5
    bad = gql(client, SET, input={"appId": app_name, "secrets": [{"key": "not ok", "value": "x"}]})
    assert "invalid secret name" in bad["errors"][0]["message"]


# fly-go's own documents (superfly/fly-go resource_secrets.go, SetSecrets and UnsetSecrets; flyctl's
# gql/genqclient.graphql SetSecrets asks the same): the release's user and evaluationId are asked for; a
# schema without them refused the whole mutation and set nothing.
FLY_GO_RELEASE = "release { id version reason description user { id email name } evaluationId createdAt }"
FLY_GO_SET = "mutation($input: SetSecretsInput!) { setSecrets(input: $input) { %s } }" % FLY_GO_RELEASE
FLY_GO_UNSET = "mutation($input: UnsetSecretsInput!) { unsetSecrets(input: $input) { %s } }" % FLY_GO_RELEASE


def test_graphql_secrets_answer_fly_gos_documents(client: httpx.Client, app_name: str) -> None:
    assert validate(FLYCTL_SCHEMA, parse(FLY_GO_SET)) == [] and validate(FLYCTL_SCHEMA, parse(FLY_GO_UNSET)) == []
    out = gql(client, FLY_GO_SET, input={"appId": app_name, "secrets": [{"key": "A", "value": "1"}]})
    assert out == {"data": {"setSecrets": {"release": None}}}
    assert [s["name"] for s in client.get(f"/v1/apps/{app_name}/secrets").json()["secrets"]] == ["A"]
    out = gql(client, FLY_GO_UNSET, input={"appId": app_name, "keys": ["A"]})
    assert out == {"data": {"unsetSecrets": {"release": None}}}
    assert client.get(f"/v1/apps/{app_name}/secrets").json()["secrets"] == []


def test_graphql_app_operations_respect_token_scope(fly: FlysimServer, client: httpx.Client, app_name: str) -> None:
    from flysim_helpers import org_token

    client.post("/v1/apps", json={"app_name": "acme-app", "org_slug": "acme"})
    token = org_token(client, "acme")["token"]
    with fly.client(token=token) as acme:
        assert gql(acme, APP, name="acme-app")["data"]["app"]["name"] == "acme-app"
        for doc, variables in ((APP, {"name": app_name}),
                               (SET, {"input": {"appId": app_name, "secrets": [{"key": "X", "value": "1"}]}}),
                               (ALLOCATE, {"input": {"appId": app_name, "type": "v6"}})):
            out = gql(acme, doc, **variables)
            assert out["errors"][0]["message"] == "Could not find App", out
    assert client.get(f"/v1/apps/{app_name}/secrets").json()["secrets"] == []
    assert client.get(f"/v1/apps/{app_name}/ip_assignments").json()["ips"] == []


def test_flysims_graphql_schema_is_a_subset_of_flyctls() -> None:
    """Every type, field, argument and input field flysim serves is in flyctl's schema, with the same type."""
    from pathlib import Path

    from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLInterfaceType, GraphQLObjectType

    ours = build_schema((Path(__file__).resolve().parents[2] / "flysim" / "schema.graphql").read_text())
    problems = []
    for name, ours_type in ours.type_map.items():
        if name.startswith("__"):
            continue
        roots = {"Query": FLYCTL_SCHEMA.query_type, "Mutation": FLYCTL_SCHEMA.mutation_type}
        theirs = roots[name] if name in roots else FLYCTL_SCHEMA.type_map.get(name)
        if theirs is None or type(theirs) is not type(ours_type):
            problems.append(f"type {name}")
            continue
        if isinstance(ours_type, GraphQLEnumType):
            problems += [f"{name}.{v}" for v in ours_type.values if v not in theirs.values]
        if isinstance(ours_type, (GraphQLObjectType, GraphQLInterfaceType, GraphQLInputObjectType)):
            for fname, field in ours_type.fields.items():
                other = theirs.fields.get(fname)
                if other is None or str(other.type) != str(field.type):
                    problems.append(f"{name}.{fname}: {field.type} vs {other.type if other else None}")
                    continue
                for aname, arg in getattr(field, "args", {}).items():
                    if aname not in other.args or str(other.args[aname].type) != str(arg.type):
                        problems.append(f"{name}.{fname}({aname})")
    assert problems == []
