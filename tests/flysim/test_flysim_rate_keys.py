"""Rate-limit buckets keyed as Fly keys them: per action and per identifier (machine, app, org).

Source: superfly/docs machines/api/working-with-machines-api, "Rate Limits".
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from flysim.testing import FlysimServer


@pytest.fixture(scope="module")
def limited() -> Iterator[FlysimServer]:
    with FlysimServer(orgs=["personal", "acme"], rate_limit=True) as server:
        yield server


@pytest.fixture
def rl(limited: FlysimServer) -> Iterator[httpx.Client]:
    limited.reset()
    with limited.client() as c:
        yield c


def _create_app(c: httpx.Client, name: str, org: str = "personal", key: str = "app_name") -> int:
    return c.post("/v1/apps", json={key: name, "org_slug": org}).status_code


def test_app_creates_of_different_apps_in_one_org_do_not_share_a_bucket(rl: httpx.Client) -> None:
    # Four slices at once, seven apps each: 28 creates in one org within a second all pass.
    codes = [_create_app(rl, f"s{slice_}-app{i}") for slice_ in range(4) for i in range(7)]
    assert codes == [201] * 28


def test_app_create_of_one_name_is_limited_per_action(rl: httpx.Client) -> None:
    codes = [_create_app(rl, "same-name") for _ in range(4)]
    assert codes[0] == 201 and codes[1:3] == [422, 422]  # burst 3: the name is taken
    r = rl.post("/v1/apps", json={"app_name": "same-name", "org_slug": "personal"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    # fly-go's CreateAppRequest sends `name`: the same bucket
    assert _create_app(rl, "same-name", key="name") == 429
    assert _create_app(rl, "other-name") == 201


def test_machine_actions_are_limited_per_machine(rl: httpx.Client) -> None:
    assert _create_app(rl, "a") == 201
    ids = []
    for _ in range(2):
        r = rl.post("/v1/apps/a/machines", json={"config": {"image": "nginx"}})
        assert r.status_code == 200
        ids.append(r.json()["id"])
    first = [rl.get(f"/v1/apps/a/machines/{ids[0]}/wait", params={"state": "started"}).status_code for _ in range(4)]
    assert first == [200, 200, 200, 429]
    # another machine of the same app has its own bucket, and so has another action
    assert rl.get(f"/v1/apps/a/machines/{ids[1]}/wait", params={"state": "started"}).status_code == 200
    assert rl.get(f"/v1/apps/a/machines/{ids[0]}/events").status_code == 200
    # Get Machine: 5/s with a burst of 10
    shows = [rl.get(f"/v1/apps/a/machines/{ids[0]}").status_code for _ in range(11)]
    assert shows[:10] == [200] * 10 and shows[10] == 429


def test_app_level_actions_are_limited_per_app(rl: httpx.Client) -> None:
    for name in ("a", "b"):
        assert _create_app(rl, name) == 201
    codes = [rl.get("/v1/apps/a/volumes").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert rl.get("/v1/apps/b/volumes").status_code == 200


def test_app_list_is_limited_per_org(rl: httpx.Client) -> None:
    codes = [rl.get("/v1/apps", params={"org_slug": "personal"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert rl.get("/v1/apps", params={"org_slug": "acme"}).status_code == 200


def test_app_deletions_are_limited_to_100_a_minute_per_org(limited: FlysimServer, rl: httpx.Client) -> None:
    assert _create_app(rl, "acme-del", org="acme") == 201
    for i in range(101):
        assert _create_app(rl, f"del-{i}") == 201
    codes = [rl.delete(f"/v1/apps/del-{i}").status_code for i in range(101)]
    assert codes[:100] == [202] * 100 and codes[100] == 429
    assert rl.delete("/v1/apps/acme-del").status_code == 202  # another org: its own budget
    assert any(a["name"] == "del-100" for a in limited.state()["apps"])
