"""The client rides out 429s (on a time budget, saying what it waits for), 5xx and lost connections; the
providers adopt what a lost answer or a crash created instead of duplicating it, the org token included;
and no token ever shows up in logs, exceptions or reprs while they do."""

from __future__ import annotations

import logging

import pytest

from fly import FlyClient, FlyConnection, FlyRateLimited, FlyServerError, RetryPolicy
from fly.providers import AppProvider, MachineProvider, OrgTokenProvider, VolumeProvider

FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, attempts=10)


def client_for(flysim, retry: RetryPolicy = FAST) -> FlyClient:
    connection = FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                       environ={})
    return FlyClient(connection, retry=retry)


def conn(flysim) -> dict:
    return {"fly_api": {"api_base_url": flysim.url, "flaps_base_url": flysim.url}, "fly_token": flysim.token}


def live_machines(flysim, app: str) -> list[dict]:
    return [m for a in flysim.state()["apps"] if a["name"] == app for m in a["machines"] if m["state"] != "destroyed"]


def live_tokens(flysim, name: str) -> list[dict]:
    return [t for t in flysim.state().get("tokens", []) if t.get("name") == name and not t.get("revoked")]


def test_burst_of_429_and_503_on_reads_is_ridden_out_saying_what_it_waits_for(flysim, caplog) -> None:
    caplog.set_level(logging.INFO, logger="fly")
    with client_for(flysim) as fly:
        fly.create_app("burst-app", "personal")
        flysim.add_fault(kind="status", status=429, retry_after=0, operation="Apps_show", count=3)
        flysim.add_fault(kind="status", status=503, operation="Apps_show", count=2)
        assert fly.get_app("burst-app").name == "burst-app"
    statuses = [c["status"] for c in flysim.calls() if c["operation"] == "Apps_show"][-6:]
    assert sorted(statuses[:5]) == [429, 429, 429, 503, 503] and statuses[5] == 200
    assert "waiting for Fly's app-get rate limit" in caplog.text


def test_a_rate_limited_create_is_retried_and_the_budget_names_the_limit(flysim) -> None:
    with client_for(flysim) as fly:
        # Refused twice, then let through: one app, no error.
        flysim.add_fault(kind="status", status=429, retry_after=0, operation="Apps_create", count=2)
        fly.create_app("limited-app", "personal")
        assert [a["name"] for a in flysim.state()["apps"]] == ["limited-app"]
    flysim.add_fault(kind="status", status=429, retry_after=5, operation="Apps_create")
    with client_for(flysim, RetryPolicy(rate_limit_budget=2)) as fly, pytest.raises(FlyRateLimited) as exc:
        fly.create_app("never-app", "personal")
    assert "Fly's app-create rate limit still refused" in str(exc.value)
    assert "FLY_RATE_LIMIT_BUDGET_SECONDS" in str(exc.value)


def test_lost_create_answers_are_adopted_instead_of_duplicated(flysim) -> None:
    c = conn(flysim)
    # The create happens, the answer is lost: the provider tries again and adopts what the first one made.
    flysim.add_fault(kind="status", status=503, operation="Apps_create", count=1, after_commit=True)
    AppProvider().create({"name": "lost-app", "org_slug": "personal", **c})
    assert [a["name"] for a in flysim.state()["apps"]].count("lost-app") == 1

    flysim.add_fault(kind="status", status=429, retry_after=0, operation="Machines_create", count=2)
    flysim.add_fault(kind="status", status=503, operation="Machines_create", count=2, after_commit=True)
    machine = MachineProvider().create({"app": "lost-app", "name": "lost-0", "region": "syd",
                                        "config": {"image": "img:1"}, **c})
    assert [m["id"] for m in live_machines(flysim, "lost-app")] == [machine.id]

    flysim.add_fault(kind="fail", operation="Volumes_create", count=1, after_commit=True)
    volume = VolumeProvider().create({"app": "lost-app", "name": "data", "region": "syd", "size_gb": 1, **c})
    volumes = [v for a in flysim.state()["apps"] if a["name"] == "lost-app" for v in a["volumes"]]
    assert [v["id"] for v in volumes] == [volume.id]


def test_a_token_minted_by_an_interrupted_run_is_revoked_and_none_outlives_destroy(flysim) -> None:
    c = conn(flysim)
    org_id = next(o["id"] for o in flysim.state()["orgs"] if o["slug"] == "personal")
    props = {"org_id": org_id, "name": "slice-control-plane", "expiry": "24h", **c}
    # A run mints the token and its answer is lost (503 after commit), as when it crashes right after.
    flysim.add_fault(kind="status", status=503, operation="GraphQL", count=1, after_commit=True)
    with client_for(flysim) as fly, pytest.raises(FlyServerError):
        fly.create_org_token(org_id, "slice-control-plane", expiry="24h")
    [orphan] = live_tokens(flysim, "slice-control-plane")

    # The rerun: the orphan is revoked (its value is lost for good) and one token is minted.
    created = OrgTokenProvider().create(props)
    assert [t["id"] for t in live_tokens(flysim, "slice-control-plane")] == [created.id] != [orphan["id"]]
    assert created.outs["token"]

    # Another interrupted mint, then destroy: no live token of the slice is left.
    with client_for(flysim) as fly:
        fly.create_org_token(org_id, "slice-control-plane", expiry="24h")
    OrgTokenProvider().delete(created.id, created.outs)
    assert live_tokens(flysim, "slice-control-plane") == []


def test_retries_give_up_with_the_last_error(flysim) -> None:
    with client_for(flysim, RetryPolicy(initial_backoff=0.01, max_backoff=0.02, attempts=3)) as fly:
        fly.create_app("down-app", "personal")
        flysim.reset_rate_limits()
        flysim.add_fault(kind="status", status=503, operation="Apps_show")
        flysim.clear_calls()
        with pytest.raises(FlyServerError) as exc:
            fly.get_app("down-app")
    calls = [c for c in flysim.calls() if c["operation"] == "Apps_show"]
    assert len(calls) == 3  # the policy's attempts, no more
    assert exc.value.status_code == calls[-1]["status"]
    assert "GET /v1/apps/down-app" in str(exc.value)


def test_no_token_in_logs_errors_or_reprs_of_failing_calls(flysim, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log at DEBUG: headers must not leak there either
    seen: list[str] = []
    with client_for(flysim, RetryPolicy(initial_backoff=0.01, max_backoff=0.02, attempts=2,
                                        rate_limit_budget=0.5)) as fly:
        seen.append(repr(fly))
        fly.create_app("leak-app", "personal")
        for spec in ({"kind": "status", "status": 503}, {"kind": "status", "status": 429, "retry_after": 1},
                     {"kind": "fail"}):
            flysim.clear_faults()
            flysim.add_fault(operation="Apps_show", **spec)
            with pytest.raises(Exception) as exc:
                fly.get_app("leak-app")
            seen += [str(exc.value), repr(exc.value), repr(exc.value.__dict__)]
        flysim.clear_faults()
    text = "\n".join(seen) + caplog.text
    assert flysim.token not in text
    assert flysim.token[4:-4] not in text  # not even a fragment
