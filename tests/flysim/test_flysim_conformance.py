"""Every documented response flysim gives must validate against Fly's OpenAPI spec.

Drives a broad scenario over real HTTP, then checks each (request, response)
pair with openapi-core. Statuses the spec does not document for an operation
(404, 401, 412, 429, ...) cannot be validated and are collected separately.
"""

from __future__ import annotations

import copy
import json

import httpx

from flysim.app import API_ROUTES, extra_routes
from flysim.departures import load_departures
from flysim.testing import FlysimServer

from openapi_core import OpenAPI
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.response.exceptions import MissingData

from tests.reference import fly_reference
from tests.reference.openapi import OpenAPIRequest, OpenAPIResponse

SPEC_PATH = fly_reference("machines-openapi.json")
DEPARTURES = load_departures()


def _operation(r: httpx.Response) -> str:
    """The operationId flysim routes the request to (its route table)."""
    from starlette.routing import compile_path

    for method, path, op, _ in API_ROUTES + extra_routes():
        if method == r.request.method and compile_path(path)[0].match(r.request.url.path):
            return op
    return "unknown"


def _scenario(c: httpx.Client, fly: FlysimServer) -> None:
    A = "/v1/apps/conf"
    c.post("/v1/apps", json={"app_name": "conf", "org_slug": "personal", "network": "n1"})
    c.post("/v1/apps", json={"app_name": "conf", "org_slug": "personal"})  # 422
    c.get("/v1/apps", params={"org_slug": "personal"})
    c.get(A)
    v = c.post(A + "/volumes", json={"name": "data", "region": "ams", "size_gb": 1}).json()
    c.get(A + "/volumes")
    c.get(A + f"/volumes/{v['id']}")
    c.put(A + f"/volumes/{v['id']}", json={"snapshot_retention": 3})
    c.put(A + f"/volumes/{v['id']}/extend", json={"size_gb": 2})
    c.get(A + f"/volumes/{v['id']}/snapshots")
    c.post(A + "/secrets", json={"values": {"API_KEY": "s3cret", "OTHER": "x"}})
    c.post(A + "/secrets/THIRD", json={"value": "v"})
    c.get(A + "/secrets")
    c.get(A + "/secrets/THIRD")
    c.delete(A + "/secrets/THIRD")
    cfg = {
        "image": "registry.fly.io/conf:1",
        "env": {"A": "1"},
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
        "mounts": [{"volume": v["id"], "path": "/data"}],
        "services": [{"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 443, "handlers": ["tls", "http"]}]}],
        "checks": {"alive": {"type": "tcp", "port": 8080, "interval": "15s", "timeout": "2s"}},
        "metadata": {"slice": "a"},
        "restart": {"policy": "on-failure", "max_retries": 3},
        "auto_destroy": False,
    }
    m = c.post(A + "/machines", json={"name": "m1", "region": "ams", "config": cfg, "min_secrets_version": 1, "lease_ttl": 30}).json()
    M = A + f"/machines/{m['id']}"
    nonce = {"fly-machine-lease-nonce": m["nonce"]}
    c.get(M + "/wait", params={"state": "started"})
    c.get(A + "/machines")
    c.get(A + "/machines", params={"include_deleted": "true", "metadata.slice": "a"})
    c.get(M)
    c.get(M, params={"include_leases": "true"})
    c.get(M + "/lease")
    c.post(M + "/lease", json={"ttl": 60}, headers=nonce)
    up = c.post(M, json={"config": {**cfg, "image": "registry.fly.io/conf:2"}, "current_version": m["instance_id"]}, headers=nonce).json()
    c.get(M, params={"version": m["instance_id"]})
    c.get(M + "/versions")
    c.get(M + "/wait", params={"state": "started", "version": up["instance_id"]})
    c.delete(M + "/lease", headers=nonce)
    c.post(M + "/metadata/k", json={"value": "v"})
    c.get(M + "/metadata")
    c.get(M + "/metadata/k")
    c.patch(M + "/metadata", json={"metadata": {"k2": "v2"}})
    c.delete(M + "/metadata/k")
    c.post(M + "/exec", json={"command": ["sh", "-c", "echo hi > /data/f && cat /data/f"]})
    c.get(M + "/ps")
    c.post(M + "/cordon")
    c.post(M + "/uncordon")
    c.post(M + "/restart")
    c.get(M + "/wait")
    c.post(M + "/suspend")
    c.get(M + "/wait", params={"state": "suspended"})
    c.post(M + "/start")
    c.get(M + "/wait")
    c.post(M + "/signal", json={"signal": "SIGHUP"})
    c.post(M + "/stop", json={"signal": "SIGTERM", "timeout": "5s"})
    c.get(M + "/wait", params={"state": "stopped"})
    c.get(M + "/events")
    c.post(A + "/ip_assignments", json={"type": "shared_v4"})
    c.post(A + "/ip_assignments", json={"type": "v6"})
    p6 = c.post(A + "/ip_assignments", json={"type": "private_v6", "network": "n1"}).json()
    c.get(A + "/ip_assignments")
    c.delete(A + f"/ip_assignments/{p6['ip']}")
    c.post(A + "/certificates/acme", json={"hostname": "www.example.com"})
    c.get(A + "/certificates")
    c.get(A + "/certificates/www.example.com")
    c.post(A + "/certificates/www.example.com/check")
    c.delete(A + "/certificates/www.example.com/acme")
    c.post(A + "/certificates/acme", json={"hostname": "api.example.com"})
    c.delete(A + "/certificates/api.example.com")
    c.post(A + "/deploy_token", json={"expiry": "1h"})
    c.get("/v1/orgs/personal/machines")
    c.get("/v1/orgs/personal/volumes")
    c.delete(M)
    c.get(M + "/wait", params={"state": "destroyed"})
    c.delete(A + f"/volumes/{v['id']}")
    c.delete(A)


def test_every_documented_response_matches_the_spec(fly: FlysimServer) -> None:
    spec = json.loads(SPEC_PATH.read_text())
    spec = copy.deepcopy(spec)
    spec["servers"] = [{"url": fly.url}]
    api = OpenAPI.from_dict(spec)
    exchanges: list[httpx.Response] = []
    with fly.client(event_hooks={"response": [lambda r: r.read() and None or exchanges.append(r)]}) as c:
        _scenario(c, fly)
    validated, undocumented, failures, departed = 0, [], [], set()
    for r in exchanges:
        try:
            api.validate_response(OpenAPIRequest.of(r.request), OpenAPIResponse.of(r))
            validated += 1
        except MissingData:
            # Raised only where the spec declares `content: {}` (no body) and the
            # body is empty: exactly right, openapi-core just cannot express it.
            assert r.content == b"", r.text
            validated += 1
        except ResponseNotFound:
            undocumented.append(f"{r.request.method} {r.request.url.path} -> {r.status_code}")
        except Exception as exc:  # noqa: BLE001 - report every mismatch at once
            operation = _operation(r)
            if DEPARTURES.covers("body", operation, r.status_code):
                departed.add(operation)  # a JSON body where the spec declares none (departures.json)
                continue
            failures.append(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {exc!r} {getattr(exc, '__cause__', '')!r} body={r.text[:300]}")
    assert not failures, "\n".join(failures)
    assert validated >= 50, (validated, undocumented)
    assert departed == {"Machines_start", "Machines_stop", "Machines_restart", "Machines_suspend", "Machines_signal",
                        "Machines_cordon", "Machines_uncordon", "Machines_delete", "Machines_release_lease"}
    # The only undocumented status in this scenario is none: all calls above are happy paths
    # except the duplicate app (422, documented).
    assert undocumented == [], undocumented
