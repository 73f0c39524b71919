"""The wizard's HTTP surface on the real engine: one deploy per prefix, the event stream, teardown's
confirmation, answers that keep no credential and are never cached."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from flysim.testing import FlysimServer

from selfhosted_helpers import WizardServer, secret_values

pytestmark = pytest.mark.e2e


def _form(flysim: FlysimServer, creds: dict[str, str], prefix: str) -> dict[str, str]:
    return {"fly_token": flysim.token, "prefix": prefix, "org": "personal", "region": "ams", "channel": "whatsapp",
            "anthropic_api_key": creds["anthropic_api_key"], "twilio_account_sid": creds["twilio_account_sid"],
            "twilio_auth_token": creds["twilio_auth_token"], "twilio_whatsapp_number": creds["twilio_whatsapp_number"]}


def _finished(http: httpx.Client, job_page: str) -> httpx.Response:
    """The job's page once the job has ended (its event stream ends then)."""
    with http.stream("GET", f"{job_page}/events") as stream:
        "".join(stream.iter_text())
    return http.get(job_page)


def _plan(http: httpx.Client, form: dict[str, str]) -> str:
    answer = http.post("/plan", data=form)
    assert answer.status_code == 200, answer.text
    return re.search(r'action="/jobs/([^/]+)/deploy"', answer.text).group(1)


def test_one_deploy_per_prefix_and_the_event_stream(wizard: WizardServer, flysim: FlysimServer,
                                                   creds: dict[str, str]) -> None:
    values = secret_values(creds, flysim.token)
    # A failing check keeps the first deploy busy for seconds (health, then the rollback).
    flysim.add_fault(kind="check_failure", app="busy-relay", message="GET /health: 500")
    with httpx.Client(base_url=wizard.url, timeout=60) as http:
        first, second = _plan(http, _form(flysim, creds, "busy")), _plan(http, _form(flysim, creds, "busy"))
        started = http.post(f"/jobs/{first}/deploy")
        assert started.status_code == 303 and started.headers["location"] == f"/jobs/{first}"

        again = http.post(f"/jobs/{second}/deploy")
        assert again.status_code == 409 and "A deploy of &#39;busy&#39; is already running" in again.text
        assert f'href="/jobs/{first}"' in again.text  # "already running" leads to the running job
        replan = http.post("/plan", data=_form(flysim, creds, "busy"))
        assert replan.status_code == 409 and "already running" in replan.text
        assert f'href="/jobs/{first}"' in replan.text
        teardown = http.post("/teardown", data={"prefix": "busy", "org": "personal", "fly_token": flysim.token,
                                                "confirm": "yes"})
        assert teardown.status_code == 409

        with http.stream("GET", f"/jobs/{first}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-store"
            body = "".join(stream.iter_text())
        events = re.findall(r"event: (\w+)\ndata: (.*)\n\n", body)
        steps = [json.loads(data) for kind, data in events if kind == "step"]
        assert events[-1][0] == "end" and json.loads(events[-1][1]) == {"state": "failed"}
        texts = [s["text"] for s in steps]
        assert "rolled back: no app of 'busy' is left" in texts
        assert any("busy-relay: check 'health' is critical (GET /health: 500)" in t for t in texts)
        assert not [name for name, value in values.items() if value in body]

        page = http.get(f"/jobs/{first}")
        assert page.headers["cache-control"] == "no-store"
        assert 'id="result-failed"' in page.text
        assert not [name for name, value in values.items() if value in page.text]
        # Once the first is done, the prefix is free again.
        assert http.post("/plan", data=_form(flysim, creds, "busy")).status_code == 200


def test_teardown_wants_a_confirmation_and_a_token(wizard: WizardServer, flysim: FlysimServer) -> None:
    with httpx.Client(base_url=wizard.url, timeout=30) as http:
        answer = http.post("/teardown", data={"prefix": "x1", "org": "personal", "fly_token": ""})
        assert answer.status_code == 422
        assert "Tick the box to confirm" in answer.text and "Fly API token is required" in answer.text
        done = http.post("/teardown", data={"prefix": "x1", "org": "personal", "fly_token": flysim.token,
                                            "confirm": "yes"}, follow_redirects=True)
        assert done.status_code == 200
    assert flysim.token not in done.text
    with httpx.Client(base_url=wizard.url, timeout=30) as http:
        started = http.post("/teardown", data={"prefix": "x1", "org": "personal", "fly_token": "fo1_wrong-token-123",
                                               "confirm": "yes"})
        refused = _finished(http, started.headers["location"])
    assert 'id="teardown-failed"' in refused.text
    assert "flysim refused the token (unauthorized)" in refused.text and "fo1_wrong-token-123" not in refused.text


def test_unknown_jobs_and_expired_plans_are_said_in_words(wizard: WizardServer) -> None:
    with httpx.Client(base_url=wizard.url, timeout=30) as http:
        assert "No such job" in http.get("/jobs/nope").text
        expired = http.post("/jobs/nope/deploy")
        assert expired.status_code == 404 and "Fill in the form again" in expired.text
        assert http.get("/jobs/nope/events").status_code == 404


def test_two_users_deploy_at_once(wizard: WizardServer, flysim: FlysimServer, creds: dict[str, str]) -> None:
    with httpx.Client(base_url=wizard.url, timeout=120) as http:
        jobs = [_plan(http, _form(flysim, creds, prefix)) for prefix in ("par-a", "par-b")]
        for job in jobs:
            assert http.post(f"/jobs/{job}/deploy").status_code == 303
        for job in jobs:
            with http.stream("GET", f"/jobs/{job}/events") as stream:
                body = "".join(stream.iter_text())
            assert body.rstrip().endswith('data: {"state": "succeeded"}'), body[-2000:]
    names = {a["name"] for a in flysim.state()["apps"]}
    assert {"par-a-relay", "par-a-vm", "par-b-relay", "par-b-vm"} <= names
