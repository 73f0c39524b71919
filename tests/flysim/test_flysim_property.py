"""Property-based conformance: requests generated from Fly's OpenAPI spec, answers held to it.

For every operation flysim serves, schemathesis generates requests from
`machines-openapi.json`: valid ones (positive) and invalid ones (negative), aimed at
a real app, machine, volume, certificate and IP so that they reach the handlers.
Every answer must

- not be a 5xx, and
- have a status the spec documents for the operation, with a body valid against the
  spec's schema for it,

or be covered by a documented departure: `flysim/departures.json`, the machine-readable
form of the "Known differences from Fly" table in docs/flysim.md.

Bounded for CI: EXAMPLES generated requests per operation and mode (env
FLYSIM_PROPERTY_EXAMPLES overrides it), derandomized so a run is reproducible.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_core import OpenAPI
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.response.exceptions import MissingData
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET

from flysim.app import API_ROUTES, extra_routes
from flysim.departures import load_departures
from flysim.testing import FlysimServer
from tests.reference import fly_reference
from tests.reference.openapi import OpenAPIRequest, OpenAPIResponse

EXAMPLES = int(os.environ.get("FLYSIM_PROPERTY_EXAMPLES", "5"))
SPEC = json.loads(fly_reference("machines-openapi.json").read_text())
SERVED = sorted({op for _, _, op, _ in API_ROUTES + extra_routes()})
SPEC_OPS = {op["operationId"] for item in SPEC["paths"].values() for op in item.values() if isinstance(op, dict)}
OPERATIONS = [op for op in SERVED if op in SPEC_OPS]
SCHEMA = schemathesis.openapi.from_dict(SPEC)
_BY_ID = {}
for _result in SCHEMA.get_all_operations():
    _op = _result.ok()
    _BY_ID[_op.definition.raw.get("operationId")] = _op
DEPARTURES = load_departures()
HOSTNAME = "www.example.test"


def test_every_served_operation_is_in_the_spec() -> None:
    # flysim serves nothing outside Fly's spec (GraphQL and the admin API are not routes of this table).
    assert set(SERVED) - SPEC_OPS == set()


class World:
    """One app with a started machine on a volume, an IP, a certificate and a secret; rebuilt on demand."""

    def __init__(self, fly: FlysimServer, client: httpx.Client) -> None:
        self.fly, self.client = fly, client
        self.ids: dict[str, str] = {}

    def build(self) -> dict[str, str]:
        self.fly.reset()
        c = self.client
        c.post("/v1/apps", json={"app_name": "prop", "org_slug": "personal"})
        vol = c.post("/v1/apps/prop/volumes", json={"name": "data", "region": "ams", "size_gb": 1}).json()
        m = c.post("/v1/apps/prop/machines", json={"region": "ams", "config": {
            "image": "registry.fly.io/artifact-relay:1", "mounts": [{"volume": vol["id"], "path": "/data"}],
            "checks": {"alive": {"type": "tcp", "port": 8080}}, "metadata": {"k": "v"}}}).json()
        ip = c.post("/v1/apps/prop/ip_assignments", json={"type": "v6"}).json()
        c.post("/v1/apps/prop/certificates/acme", json={"hostname": HOSTNAME})
        c.post("/v1/apps/prop/secrets", json={"values": {"SECRET": "value"}})
        self.ids = {"app_name": "prop", "machine_id": m["id"], "volume_id": vol["id"], "ip": ip["ip"],
                    "hostname": HOSTNAME, "secret_name": "SECRET", "key": "k", "org_slug": "personal"}
        return self.ids


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with FlysimServer(orgs=["personal"], rate_limit=False) as fly, fly.client(timeout=10) as client:
        yield World(fly, client)


@functools.cache
def _openapi(url: str) -> OpenAPI:
    spec = copy.deepcopy(SPEC)
    spec["servers"] = [{"url": url}]
    return OpenAPI.from_dict(spec)  # checks the spec itself: seconds, so once


def _judge(operation: str, response: httpx.Response, url: str, mode: str) -> str | None:
    """None if the answer is Fly's contract or a documented departure; else what is wrong. ``mode`` is how the
    request was made (`positive`, or `negative`/`confused`: invalid on purpose), which some departures name."""
    status = response.status_code
    label = f"{operation} {response.request.method} {response.request.url.path} -> {status}"
    if status >= 500:
        return f"{label}: server error {response.text[:200]}"
    api = _openapi(url)
    try:
        api.validate_response(OpenAPIRequest.of(response.request), OpenAPIResponse.of(response))
        return None
    except MissingData:
        if response.content == b"":  # the spec's `content: {}`: no body, and none was sent
            return None
        problem, kind = "body missing", "body"
    except ResponseNotFound:
        problem, kind = "status not in the spec", "status"
    except Exception as exc:  # noqa: BLE001 - the reason goes in the message
        cause = exc.__cause__ or exc
        errors = getattr(cause, "schema_errors", None)
        problem = "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)[:300] if errors else repr(cause)[:300]
        kind = "body"
    if DEPARTURES.covers(kind, operation, status, mode):
        return None
    return f"{label}: {problem} (no departure in flysim/departures.json covers {kind} {operation} {status}) body={response.text[:200]}"


def _send(client: httpx.Client, case: Any) -> httpx.Response:
    kwargs: dict[str, Any] = {"params": case.query or None}
    headers = {k: str(v) for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if case.body is not NOT_SET:
        media = case.media_type or "application/json"
        if media == "application/json" and not isinstance(case.body, bytes):
            kwargs["content"] = json.dumps(case.body).encode()
            headers["content-type"] = "application/json"
        else:
            kwargs["content"] = case.body if isinstance(case.body, bytes) else str(case.body).encode()
            headers["content-type"] = media
    return client.request(case.method, case.formatted_path, headers=headers, **kwargs)


def _can_be_made_invalid(operation: str) -> bool:
    """Negative mode needs a query or a body to break (path parameters are pinned to the world)."""
    api_op = _BY_ID[operation]
    return bool(api_op.query) or api_op.body is not None and len(api_op.body) > 0


CASES = [pytest.param(op, GenerationMode.POSITIVE, id=f"{op}-positive") for op in OPERATIONS] + [
    pytest.param(op, GenerationMode.NEGATIVE, id=f"{op}-negative") for op in OPERATIONS if _can_be_made_invalid(op)]


# Any JSON value: what a confused client might put where the spec wants something else.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _confused(strategy: Any) -> Any:
    """A valid request with one field of its body (or of its machine config) replaced by any JSON value."""

    @st.composite
    def build(draw: Any) -> Any:
        case = draw(strategy)
        body = case.body if isinstance(case.body, dict) else None
        if body:
            target = body
            if isinstance(body.get("config"), dict) and body["config"] and draw(st.booleans()):
                target = body["config"]
            key = draw(st.sampled_from(sorted(target)))
            target[key] = draw(JSON_VALUES)
        return case

    return build()


CONFUSED = [pytest.param(op, "confused", id=f"{op}-confused") for op in OPERATIONS
            if _BY_ID[op].body is not None and len(_BY_ID[op].body) > 0]


@pytest.mark.parametrize(("operation", "mode"), CASES + CONFUSED)
def test_answers_follow_the_spec_or_a_documented_departure(world: World, operation: str, mode: Any) -> None:
    api_op = _BY_ID[operation]
    world.build()
    names = {p.name for p in api_op.path_parameters}
    # A wait is held to 1 s: the point is the answer, not the 60 s Fly allows.
    query = {"timeout": 1} if operation == "Machines_wait" else None
    if mode == "confused":
        strategy = _confused(api_op.as_strategy(generation_mode=GenerationMode.POSITIVE, query=query))
    else:
        strategy = api_op.as_strategy(generation_mode=mode, query=query)
    mutating = api_op.method.upper() != "GET"
    problems: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate,))
    @given(case=strategy)
    def check(case: Any) -> None:
        if mutating:
            world.build()  # each write starts from the same world
        # Aim at the world's objects, so that requests reach the handlers instead of a 404.
        case.path_parameters = {**(case.path_parameters or {}), **{n: world.ids[n] for n in names if n in world.ids}}
        response = _send(world.client, case)
        problem = _judge(operation, response, world.fly.url, getattr(mode, "value", mode))
        if problem:
            problems.append(problem)

    check()
    assert not problems, "\n".join(sorted(set(problems)))
