"""The wizard's HTTP surface on the real engine: one deploy per prefix, the event stream, teardown's
confirmation, answers that keep no credential and are never cached."""

from __future__ import annotations

import html
import json
import re
from decimal import Decimal

import httpx
import pytest

from fly.pricing import PriceTable
from flysim.testing import FlysimServer

from selfhosted.settings import FIELDS, SECRET_FIELDS
from selfhosted_helpers import WizardServer, secret_values

pytestmark = pytest.mark.e2e
JSON = {"Accept": "application/json"}  # how the page's own script sends its forms


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
        end = json.loads(events[-1][1])
        assert events[-1][0] == "end" and end["state"] == "failed"
        assert 'id="result-failed"' in end["page"]  # the finished page itself: shown without a reload
        texts = [s["text"] for s in steps]
        assert "rolled back: no app of 'busy' is left" in texts
        assert any("busy-relay: check 'health' is critical (GET /health: 500)" in t for t in texts)
        assert not [name for name, value in values.items() if value in body]

        page = http.get(f"/jobs/{first}")
        assert page.headers["cache-control"] == "no-store"
        assert 'id="result-failed"' in page.text
        # After the failure nothing shows as still running; the way on is in words, on the page.
        assert 'class="st-running"' not in page.text and 'class="st-stopped"' in page.text
        assert 'id="what-now"' in page.text and "<title>Not deployed: busy · Self-hosted deploy</title>" in page.text
        assert not [name for name, value in values.items() if value in page.text]
        # Once the first is done, the prefix is free again.
        assert http.post("/plan", data=_form(flysim, creds, "busy")).status_code == 200


def test_teardown_wants_a_confirmation_and_a_token(wizard: WizardServer, flysim: FlysimServer) -> None:
    with httpx.Client(base_url=wizard.url, timeout=30) as http:
        answer = http.post("/teardown", data={"prefix": "x1", "org": "personal", "fly_token": ""})
        assert answer.status_code == 422
        assert "Tick the box to confirm" in answer.text and "Fly API token is required" in answer.text
        started = http.post("/teardown", data={"prefix": "x1", "org": "personal", "fly_token": flysim.token,
                                               "confirm": "yes"})
        done = _finished(http, started.headers["location"])
        assert done.status_code == 200 and 'id="teardown-ok"' in done.text
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
            assert json.loads(body.rstrip().rsplit("data: ", 1)[1])["state"] == "succeeded", body[-2000:]
    names = {a["name"] for a in flysim.state()["apps"]}
    assert {"par-a-relay", "par-a-vm", "par-b-relay", "par-b-vm"} <= names


def _leaks(values: dict[str, str], *answers: httpx.Response) -> list[str]:
    return [name for name, value in values.items() for answer in answers if value in answer.text]


def test_pasted_invisible_characters_are_cleaned_or_refused_in_words(wizard: WizardServer, flysim: FlysimServer,
                                                                    creds: dict[str, str]) -> None:
    token = flysim.token
    with httpx.Client(base_url=wizard.url, timeout=60) as http:
        # A BOM before, a zero-width space inside, a CRLF after: cleaned, and said with the plan.
        pasted = _form(flysim, creds, "zw") | {"fly_token": "\ufeff" + token[:6] + "\u200b" + token[6:] + "\r\n"}
        answer = http.post("/plan", data=pasted, headers=JSON)
        assert answer.status_code == 200 and answer.json()["next"].endswith("/plan")
        plan_page = http.get(answer.json()["next"])
        assert "The Fly API token held an invisible character (U+200B ZERO WIDTH SPACE)" in plan_page.text
        assert 'id="token-ok"' in plan_page.text and "<title>Plan for zw · Self-hosted deploy</title>" in plan_page.text

        # A line break inside: refused beside the token before any call (not "flysim can't be reached").
        calls = len(flysim.calls())
        broken = pasted | {"fly_token": token[:6] + "\r\n" + token[6:]}
        refused = http.post("/plan", data=broken, headers=JSON)
        assert refused.status_code == 422
        assert refused.json()["errors"] == {"fly_token": "Fly API token contains a line break: paste it again as one line"}
        as_page = http.post("/plan", data=broken)  # no script: the page itself, never a bare 500
        assert as_page.status_code == 422 and "Fly API token contains a line break" in as_page.text
        assert re.search(r'id="fly_token"[^>]*aria-describedby="hint-fly_token error-fly_token" aria-invalid="true"',
                         as_page.text)
        assert len(flysim.calls()) == calls

        # Teardown cleans its token the same way (it used to end in a UnicodeEncodeError).
        started = http.post("/teardown", data={"prefix": "zw2", "org": "personal", "confirm": "yes",
                                               "fly_token": token[:6] + "\u200b" + token[6:]})
        assert started.status_code == 303
        assert 'id="teardown-ok"' in _finished(http, started.headers["location"]).text
        odd = http.post("/teardown", data={"prefix": "zw2", "org": "personal", "confirm": "yes",
                                           "fly_token": token + "\u00e9"}, headers=JSON)
        assert odd.status_code == 422
        assert "(U+00E9 LATIN SMALL LETTER E WITH ACUTE) that no Fly API token has" in odd.json()["errors"]["fly_token"]
        assert not _leaks({"token": token}, refused, as_page, odd)


def test_each_error_is_beside_its_field_and_shown(wizard: WizardServer, flysim: FlysimServer,
                                                 creds: dict[str, str]) -> None:
    values = secret_values(creds, flysim.token)
    with flysim.client() as admin:
        admin.post("/v1/apps", json={"app_name": "taken-vm", "org_slug": "other-org"}).raise_for_status()
        admin.post("/v1/apps", json={"app_name": "mine-relay", "org_slug": "personal"}).raise_for_status()
        deploy_token = admin.post("/v1/apps/mine-relay/deploy_token", json={}).json()["token"]
    before = len(flysim.calls())
    with httpx.Client(base_url=wizard.url, timeout=60) as http:
        # Under Advanced: the folded section comes back open, the error tied to its field.
        advanced = http.post("/plan", data=_form(flysim, creds, "adv") | {"volume_size_gb": "600"})
        assert advanced.status_code == 422 and '<details class="card" id="advanced" open>' in advanced.text
        assert re.search(r'id="error-volume_size_gb" data-error-for="volume_size_gb">Agent VM volume \(GB\) must be '
                         r'between 1 and 500<', advanced.text)
        assert re.search(r'id="volume_size_gb"[^>]*aria-describedby="error-volume_size_gb" aria-invalid="true"',
                         advanced.text)
        # A prefix whose app name another org has marks the prefix, not the token.
        taken = http.post("/plan", data=_form(flysim, creds, "taken"), headers=JSON)
        assert taken.status_code == 422 and list(taken.json()["errors"]) == ["prefix"]
        assert "'taken-vm', which another organization already has" in taken.json()["errors"]["prefix"]
        # A deploy token is told what it is.
        limited = http.post("/plan", data=_form(flysim, creds, "dt") | {"fly_token": deploy_token}, headers=JSON)
        assert list(limited.json()["errors"]) == ["fly_token"]
        assert "A deploy token is limited to one app and can't create apps" in limited.json()["errors"]["fly_token"]
        # "Already exists" leads to teardown with the prefix filled in.
        exists = http.post("/plan", data=_form(flysim, creds, "mine"), headers=JSON)
        assert exists.status_code == 409 and list(exists.json()["errors"]) == ["prefix"]
        assert exists.json()["link"] == {"href": "/teardown?prefix=mine&org=personal", "text": "Tear down mine"}
        teardown = http.get("/teardown?prefix=mine&org=personal")
        assert re.search(r'id="prefix" name="prefix" type="text" value="mine"', teardown.text)
        assert not _leaks({**values, "deploy_token": deploy_token}, advanced, taken, limited, exists)
    assert not [c for c in flysim.calls()[before:] if c.get("mutating")]  # every check only reads


def test_an_oversized_form_gets_a_page_in_words(wizard: WizardServer, flysim: FlysimServer,
                                               creds: dict[str, str]) -> None:
    with httpx.Client(base_url=wizard.url, timeout=60) as http:
        huge = http.post("/plan", data=_form(flysim, creds, "x" * 1_000_000))
        assert huge.status_code == 413 and "<title>Form too large · Self-hosted deploy</title>" in huge.text
        assert "The form was far too large (1.0 MB)" in huge.text and "<style>" in huge.text
        assert "x" * 100 not in huge.text
        assert http.post("/teardown", data={"prefix": "x" * 1_000_000}, headers=JSON).status_code == 413
        # Within the form's limit but beyond the field's: refused by its length, never echoed.
        long = http.post("/plan", data=_form(flysim, creds, "x" * 40_000))
        assert long.status_code == 422 and "Name prefix is 40,000 characters long; at most 30 fit" in long.text
        assert "x" * 100 not in long.text
        assert "x" * 100 not in http.get("/teardown", params={"prefix": "x" * 5000}).text
    assert flysim.calls() == []


def test_the_form_mirrors_the_servers_checks_and_a_cancelled_plan_says_so(
        wizard: WizardServer, flysim: FlysimServer, creds: dict[str, str]) -> None:
    with httpx.Client(base_url=wizard.url, timeout=60) as http:
        form = http.get("/").text
        assert "<title>Deploy your relay and agent · Self-hosted deploy</title>" in form
        inputs = {name: re.search(rf'<input id="{name}" name="{name}"[^>]*>', form) for name in FIELDS}
        inputs = {name: found.group(0) for name, found in inputs.items() if found}  # selects and unoffered: not
        assert set(inputs) >= {"prefix", "org", "volume_size_gb", "twilio_whatsapp_number", *SECRET_FIELDS}
        for name, attrs in inputs.items():
            rule = FIELDS[name]
            assert f'maxlength="{rule.max_length}"' in attrs, name
            assert (f'pattern="{rule.html_pattern}"' in attrs) == bool(rule.pattern), name
            assert ('type="password"' in attrs) == rule.secret, name
            assert not rule.secret or "value=" not in attrs, name
        for name in ("fly_token", "anthropic_api_key", "prefix", "org"):
            assert re.search(rf'<input id="{name}"[^>]* required', form), name

        job = _plan(http, _form(flysim, creds, "changed"))
        assert http.post(f"/jobs/{job}/cancel").status_code == 303
        again = http.post(f"/jobs/{job}/deploy", follow_redirects=True)
        assert 'id="cancelled"' in again.text and "The deploy failed" not in again.text
        assert "<title>Cancelled: changed · Self-hosted deploy</title>" in again.text
        assert http.get(f"/jobs/{job}/state").json() == {"id": job, "kind": "deploy", "prefix": "changed",
                                                        "state": "cancelled"}
        assert http.get("/jobs/nope/state").status_code == 404


def test_no_character_in_any_field_gets_a_bare_error(wizard: WizardServer, flysim: FlysimServer,
                                                     creds: dict[str, str]) -> None:
    """Whatever a phone keyboard puts inside whichever field: an answer in words beside that field, before any
    call, never a 500 or an echoed secret. (Characters that are dropped instead are tested above.)"""
    nasty = ["\x00", "\r\n", "\u00a0", "\u00e9", "\U0001f4a5", "\u202e"]
    with httpx.Client(base_url=wizard.url, timeout=60) as http:
        for field in (*_form(flysim, creds, "n").keys(), "volume_size_gb", "vm_size"):
            for char in nasty:
                form = _form(flysim, creds, "nasty")
                value = form.get(field, "x1")
                form[field] = value[:1] + char + value[1:]
                if field in SECRET_FIELDS and char == "\u202e":
                    continue  # a format character in a secret is dropped, not refused
                answer = http.post("/plan", data=form, headers=JSON)
                assert answer.status_code == 422, (field, char, answer.text[:300])
                assert list(answer.json()["errors"]) == [field], (field, char, answer.json())
                if field in SECRET_FIELDS:
                    assert form[field] not in answer.text
    assert flysim.calls() == []


def test_the_plan_page_says_the_fly_bill_in_words(wizard: WizardServer, flysim: FlysimServer,
                                                  creds: dict[str, str]) -> None:
    """"About $X a month on your Fly bill": the two machines at their region's figures and the VM's volume at
    fly/pricing.json's prices; the Flycast addresses (no price in the table) said in words, never as $0; the
    form's volume size, VM size and region move it by exactly the table's amounts. No engine run: the plan page
    comes before any deploy."""
    gb_month = PriceTable.load().prices["volume_gb_month"].usd
    assert gb_month == Decimal("0.15")
    before = len(flysim.calls())
    with httpx.Client(base_url=wizard.url, timeout=60) as http:
        def bill(**fields: str) -> str:
            page = http.post("/plan", data=_form(flysim, creds, "bill") | fields)
            assert page.status_code == 200, page.text
            job = re.search(r'action="/jobs/([^/]+)/deploy"', page.text).group(1)
            assert http.post(f"/jobs/{job}/cancel").status_code == 303
            return html.unescape(re.search(r"<dt>Fly bill</dt><dd>(.*?)</dd>", page.text).group(1))

        small, large = bill(volume_size_gb="1"), bill(volume_size_gb="11")
        bigger_vm, in_syd = bill(volume_size_gb="1", vm_size="shared-cpu-4x"), bill(volume_size_gb="1", region="syd")
    # In ams: the relay's shared-cpu-1x 256 MB $2.02 + the VM's shared-cpu-2x 1024 MB $6.64 + 1 GB x $0.15 = $8.81.
    assert small == ("About $8.81 a month on your Fly bill (the relay's machine (bill-relay-0), the agent VM's 1 GB "
                     "volume and the agent VM's machine (bill-vm-0)), plus the two Flycast addresses, whose prices "
                     "aren't in our price table. Machines are counted as running all month.")
    assert "the agent VM's 11 GB volume" in large and "plus the two Flycast addresses" in large
    amounts = [Decimal(re.match(r"About \$(\d+\.\d\d) a month", text).group(1))
               for text in (small, large, bigger_vm, in_syd)]
    assert amounts[1] - amounts[0] == 10 * gb_month
    assert amounts[2] - amounts[0] == Decimal("13.27") - Decimal("6.64")  # the VM as shared-cpu-4x 2048 MB in ams
    # In syd: the relay $2.47 and the VM $8.11 instead of $2.02 and $6.64.
    assert amounts[3] - amounts[0] == (Decimal("2.47") + Decimal("8.11")) - (Decimal("2.02") + Decimal("6.64"))
    assert not [c for c in flysim.calls()[before:] if c.get("mutating")]
