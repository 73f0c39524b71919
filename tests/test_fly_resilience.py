"""The client rides out 429s, 5xx and lost responses without duplicating anything, and no token ever
shows up in logs, exceptions or reprs while it does."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from fly import FlyClient, FlyConnection, FlyRateLimited, FlyServerError, RetryPolicy
from fly.client import _WaitRetryAfter

FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, attempts=10)


def client_for(flysim, retry: RetryPolicy = FAST) -> FlyClient:
    connection = FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                       environ={})
    return FlyClient(connection, retry=retry)


def live_machines(flysim, app: str) -> list[dict]:
    return [m for a in flysim.state()["apps"] if a["name"] == app for m in a["machines"] if m["state"] != "destroyed"]


def test_retry_after_is_honoured_over_backoff() -> None:
    wait = _WaitRetryAfter(initial=0.01, maximum=0.05)
    exc = FlyRateLimited(status_code=429, method="GET", path="/x", retry_after=3)
    outcome = SimpleNamespace(exception=lambda: exc)
    assert wait(SimpleNamespace(outcome=outcome, attempt_number=1, idle_for=0, seconds_since_start=0,
                                upcoming_sleep=0, retry_object=None, fn=None, args=(), kwargs={},
                                next_action=None, start_time=0)) >= 3


def test_burst_of_429_and_503_on_reads_is_ridden_out(flysim) -> None:
    with client_for(flysim) as fly:
        fly.create_app("burst-app", "personal")
        flysim.add_fault(kind="status", status=429, retry_after=0, operation="Apps_show", count=3)
        flysim.add_fault(kind="status", status=503, operation="Apps_show", count=2)
        assert fly.get_app("burst-app").name == "burst-app"
    statuses = [c["status"] for c in flysim.calls() if c["operation"] == "Apps_show"][-6:]
    assert sorted(statuses[:5]) == [429, 429, 429, 503, 503] and statuses[5] == 200


def test_lost_create_responses_adopt_instead_of_duplicating(flysim) -> None:
    with client_for(flysim) as fly:
        # The app create happens, but the answer is lost (503 after commit), then a 429 burst.
        flysim.add_fault(kind="status", status=503, operation="Apps_create", count=1, after_commit=True)
        fly.create_app("lost-app", "personal")
        assert [a["name"] for a in flysim.state()["apps"]].count("lost-app") == 1

        flysim.add_fault(kind="status", status=429, retry_after=0, operation="Machines_create", count=2)
        flysim.add_fault(kind="status", status=503, operation="Machines_create", count=2, after_commit=True)
        machine = fly.create_machine("lost-app", {"image": "img:1"}, name="lost-0", region="syd")
        assert [m["id"] for m in live_machines(flysim, "lost-app")] == [machine.id]

        flysim.add_fault(kind="fail", operation="Volumes_create", count=1, after_commit=True)
        volume = fly.create_volume("lost-app", name="data", region="syd", size_gb=1)
        volumes = [v for a in flysim.state()["apps"] if a["name"] == "lost-app" for v in a["volumes"]]
        assert [v["id"] for v in volumes] == [volume.id]


def test_retries_give_up_with_the_last_error(flysim) -> None:
    with client_for(flysim, RetryPolicy(initial_backoff=0.01, max_backoff=0.02, attempts=3)) as fly:
        fly.create_app("down-app", "personal")
        flysim.reset_rate_limits()
        flysim.add_fault(kind="status", status=503, operation="Apps_show")
        flysim.clear_calls()
        with pytest.raises((FlyServerError, FlyRateLimited)) as exc:
            fly.get_app("down-app")
    calls = [c for c in flysim.calls() if c["operation"] == "Apps_show"]
    assert len(calls) == 3  # the policy's attempts, no more
    assert exc.value.status_code == calls[-1]["status"]
    assert "GET /v1/apps/down-app" in str(exc.value)


def test_no_token_in_logs_errors_or_reprs_of_failing_calls(flysim, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log at DEBUG: headers must not leak there either
    seen: list[str] = []
    with client_for(flysim, RetryPolicy(initial_backoff=0.01, max_backoff=0.02, attempts=2)) as fly:
        seen.append(repr(fly))
        fly.create_app("leak-app", "personal")
        for spec in ({"kind": "status", "status": 503}, {"kind": "status", "status": 429, "retry_after": 0},
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
