"""The wizard in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; never a
downloaded browser) at a phone's viewport, deploying to flysim on the real engine. A screenshot of
each step goes to artifacts/screenshots/<test>/."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flysim.testing import FlysimServer

from selfhosted_helpers import WizardServer, scan, secret_values

# What the pages do in a browser is the same whatever Python serves them (the wizard's HTTP answers and its
# deploys are tested on both Pythons in test_selfhosted_wizard_http.py): scripts/test runs this on one.
pytestmark = [pytest.mark.e2e, pytest.mark.one_python]
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run scripts/ensure-chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest) -> Iterator[tuple[Page, "Shots"]]:
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page, Shots(page, request.node.name)
    context.close()


class Shots:
    def __init__(self, page: Page, test: str) -> None:
        self.page = page
        self.dir = REPO / "artifacts" / "screenshots" / test
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.png"):
            old.unlink()
        self.n = 0

    def __call__(self, name: str, full_page: bool = True) -> None:
        """The whole page, or (``full_page=False``) what the phone's screen shows now."""
        self.n += 1
        self.page.screenshot(path=str(self.dir / f"{self.n:02d}-{name}.png"), full_page=full_page)


def _fill(page: Page, flysim: FlysimServer, creds: dict[str, str], prefix: str) -> None:
    page.fill("#fly_token", flysim.token)
    page.fill("#prefix", prefix)
    page.select_option("#region", "ams")
    page.fill("#anthropic_api_key", creds["anthropic_api_key"])
    page.fill("#twilio_account_sid", creds["twilio_account_sid"])
    page.fill("#twilio_auth_token", creds["twilio_auth_token"])
    page.fill("#twilio_whatsapp_number", creds["twilio_whatsapp_number"])


def _no_credential(page: Page, values: dict[str, str]) -> None:
    html = page.content()
    assert not [name for name, value in values.items() if value in html], "a credential is in the page"


def _apps(flysim: FlysimServer, prefix: str) -> list[str]:
    return [a["name"] for a in flysim.state()["apps"] if a["name"].startswith(prefix + "-")]


def test_deploy_and_tear_down_from_a_phone(wizard: WizardServer, flysim: FlysimServer, phone: tuple[Page, Shots],
                                           creds: dict[str, str], job_tmp: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every log record of the wizard, the runner and the Fly client
    page, shot = phone
    values = secret_values(creds, flysim.token)
    page.goto(wizard.url)
    expect(page.locator("#rehearsal")).to_be_visible()
    # Mobile-first: the form fits the phone's width (nothing scrolls sideways).
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _fill(page, flysim, creds, "phone")
    shot("form")

    page.click("#check")
    expect(page.locator("#token-ok")).to_contain_text("organization personal (personal); it can create apps")
    expect(page.locator("#plan")).to_contain_text("phone-relay")
    expect(page.locator("#plan")).to_contain_text("ANTHROPIC_API_KEY (value never shown or stored here)")
    assert _apps(flysim, "phone") == []  # the plan is shown before anything is created
    _no_credential(page, values)
    shot("plan")

    page.click("#deploy")
    expect(page.locator("#live")).to_be_visible()
    expect(page.locator("#steps li").first).to_be_visible()  # streamed in while the deploy runs
    shot("progress")
    expect(page.locator("#result-ok")).to_be_visible(timeout=120_000)
    expect(page.locator("#relay-url")).to_have_text("https://phone-relay.fly.dev")
    expect(page.locator("#webhook-url")).to_have_text("https://phone-relay.fly.dev/webhooks/twilio")
    expect(page.locator("#next-step")).to_contain_text("Twilio console")
    expect(page.locator("#steps")).to_contain_text("health: machine checks passing, relay /health ok")
    assert sorted(_apps(flysim, "phone")) == ["phone-relay", "phone-vm"]
    _no_credential(page, values)
    shot("success")

    page.fill("#teardown_fly_token", flysim.token)
    page.check("#confirm")
    page.click("#teardown")
    expect(page.locator("#teardown-ok")).to_be_visible(timeout=60_000)
    expect(page.locator("#steps")).to_contain_text("phone-vm: removed")
    _no_credential(page, values)
    shot("torn-down")
    assert _apps(flysim, "phone") == []

    # The way back: the start page lists this browser's jobs (kept in the browser, never a credential).
    page.click("#again")
    jobs = page.locator("#job-list li")
    expect(jobs).to_have_count(2)
    expect(jobs.nth(0)).to_contain_text("Teardown of phone")
    expect(jobs.nth(0)).to_contain_text("removed")
    expect(jobs.nth(1)).to_contain_text("Deploy of phone")
    expect(jobs.nth(1)).to_contain_text("deployed")
    assert jobs.nth(0).locator("a").bounding_box()["height"] >= 44
    stored = page.evaluate("JSON.stringify(window.localStorage)")
    assert "phone" in stored and not [name for name, value in values.items() if value in stored]
    shot("jobs-on-the-start-page")
    jobs.nth(1).locator("a").click()
    expect(page.locator("#result-ok")).to_be_visible()
    assert scan(values, job_tmp) == []  # the jobs' temp dirs: backend, work dir, Pulumi home, event logs
    assert caplog.records and not [name for name, value in values.items() if value in caplog.text]


def test_a_failing_health_check_shows_what_failed_and_leaves_nothing(
        wizard: WizardServer, flysim: FlysimServer, phone: tuple[Page, Shots], creds: dict[str, str]) -> None:
    page, shot = phone
    flysim.add_fault(kind="check_failure", app="sad-relay", message="GET /health: 500 Internal Server Error")
    page.goto(wizard.url)
    _fill(page, flysim, creds, "sad")
    page.click("#check")
    expect(page.locator("#token-ok")).to_be_visible()
    shot("plan")
    page.click("#deploy")
    expect(page.locator("#result-failed")).to_be_visible(timeout=120_000)
    expect(page.locator("#failure")).to_contain_text(
        "sad-relay: check 'health' is critical (GET /health: 500 Internal Server Error)")
    expect(page.locator("#rolled-back")).to_contain_text("nothing of sad is left")
    expect(page.locator("#steps .st-running")).to_have_count(0)  # nothing shows as still running
    expect(page.locator("#teardown-prefix")).to_have_attribute("href", "/teardown?prefix=sad&org=personal")
    _no_credential(page, secret_values(creds, flysim.token))
    shot("failed")
    assert _apps(flysim, "sad") == []


def test_a_typo_keeps_what_was_typed_and_every_error_is_visible(
        wizard: WizardServer, flysim: FlysimServer, phone: tuple[Page, Shots], creds: dict[str, str]) -> None:
    page, shot = phone
    answers: list[str] = []
    page.on("response", lambda r: answers.append(r.text()) if r.url.endswith("/plan") else None)
    page.goto(wizard.url)
    _fill(page, flysim, creds, "Bad_Prefix")
    page.fill("#twilio_account_sid", "ACnot-a-real-sid-value")
    page.click("#advanced summary")
    page.fill("#volume_size_gb", "600")
    page.click("#advanced summary")  # folded again before sending
    page.click("#check")
    expect(page.locator("#error-prefix")).to_contain_text("Name prefix 'Bad_Prefix' can't prefix Fly app names")
    expect(page.locator("#error-twilio_account_sid")).to_contain_text("is not a Twilio Account SID")
    # The error under Advanced is shown: the section opened itself.
    expect(page.locator("#error-volume_size_gb")).to_be_visible()
    expect(page.locator("#error-volume_size_gb")).to_contain_text("between 1 and 500")
    expect(page.locator("#problem")).to_contain_text("Please fix the fields marked below")
    for field in ("prefix", "twilio_account_sid", "volume_size_gb"):  # tied to the field for screen readers
        expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
        assert f"error-{field}" in page.get_attribute(f"#{field}", "aria-describedby")
    expect(page.locator("#fly_token")).not_to_have_attribute("aria-invalid", "true")
    # Every secret typed is still in the page (its memory only): the server never sent one back.
    expect(page.locator("#fly_token")).to_have_value(flysim.token)
    expect(page.locator("#anthropic_api_key")).to_have_value(creds["anthropic_api_key"])
    expect(page.locator("#twilio_auth_token")).to_have_value(creds["twilio_auth_token"])
    values = {**secret_values(creds, flysim.token), "sid": "ACnot-a-real-sid-value"}
    assert answers and not [name for name, value in values.items() for answer in answers if value in answer]
    shot("errors")
    page.locator("#error-volume_size_gb").scroll_into_view_if_needed()
    shot("advanced-error-on-screen", full_page=False)
    assert flysim.calls() == []  # refused before any API call

    # Fix only the three fields: nothing else is typed again.
    page.fill("#prefix", "typo")
    page.fill("#twilio_account_sid", creds["twilio_account_sid"])
    page.fill("#volume_size_gb", "2")
    page.click("#check")
    expect(page.locator("#token-ok")).to_be_visible()
    expect(page.locator("#plan")).to_contain_text("agentdata, 2 GB in ams")
    assert page.title() == "Plan for typo · Self-hosted deploy"


def test_an_invisible_character_in_a_token_is_handled_in_words(
        wizard: WizardServer, flysim: FlysimServer, phone: tuple[Page, Shots], creds: dict[str, str]) -> None:
    page, shot = phone
    page.goto(wizard.url)
    _fill(page, flysim, creds, "zwsp")
    token = flysim.token
    page.fill("#fly_token", "\ufeff" + token[:8] + "\u200b" + token[8:] + "\r\n")  # as a phone pastes it
    key = creds["anthropic_api_key"]
    page.fill("#anthropic_api_key", key[:12] + "\u00a0" + key[12:])
    page.click("#check")
    expect(page.locator("#error-anthropic_api_key")).to_have_text(
        "Anthropic API key contains an invisible character (U+00A0 NO-BREAK SPACE) that no Anthropic API key has: "
        "paste it again, copied afresh from where it was made")
    expect(page.locator("#error-fly_token")).to_be_hidden()
    shot("refused")
    page.fill("#anthropic_api_key", key)
    page.click("#check")
    expect(page.locator("#note-1")).to_have_text("The Fly API token held an invisible character (U+200B ZERO WIDTH "
                                                 "SPACE), as a phone's paste can add; removed.")
    expect(page.locator("#token-ok")).to_contain_text("it can create apps")
    _no_credential(page, secret_values(creds, flysim.token))
    shot("plan-with-note")


def test_touch_targets_keyboards_and_the_chosen_channel(wizard: WizardServer, phone: tuple[Page, Shots]) -> None:
    page, shot = phone
    page.goto(wizard.url)
    assert page.title() == "Deploy your relay and agent · Self-hosted deploy"
    # Choosing Discord shows its token field and hides WhatsApp's (and the other way round).
    expect(page.locator("#discord_bot_token")).to_be_hidden()
    page.tap("label:has(#channel-discord)")
    expect(page.locator("#discord_bot_token")).to_be_visible()
    expect(page.locator("#twilio_account_sid")).to_be_hidden()
    expect(page.locator("#telegram_bot_token")).to_be_hidden()
    assert page.evaluate("document.getElementById('discord_bot_token').required")
    assert not page.evaluate("document.getElementById('twilio_auth_token').required")
    shot("discord")
    for field in ("prefix", "org"):
        for name, value in (("autocapitalize", "off"), ("autocorrect", "off"), ("spellcheck", "false"),
                            ("inputmode", "url")):
            assert page.get_attribute(f"#{field}", name) == value, (field, name)
    sizes = page.evaluate("""() => Array.from(document.querySelectorAll(
        'label, a, button, summary, input:not([type=hidden]), select')).filter(e => e.offsetParent !== null)
        .map(e => [e.id || e.getAttribute('for') || e.textContent.trim().slice(0, 30), e.getBoundingClientRect().height])""")
    assert len(sizes) > 15
    assert [(what, height) for what, height in sizes if height < 44 and what not in ("channel-whatsapp",
            "channel-discord", "channel-telegram")] == []
    radio = page.locator("#channel-telegram").bounding_box()
    assert radio["height"] >= 24 and page.locator("label:has(#channel-telegram)").bounding_box()["height"] >= 44


def test_ways_back_and_pages_in_words(wizard: WizardServer, flysim: FlysimServer, phone: tuple[Page, Shots],
                                      creds: dict[str, str]) -> None:
    page, shot = phone
    with flysim.client() as admin:  # a pair of an earlier deploy whose state is gone
        admin.post("/v1/apps", json={"app_name": "old-bot-relay", "org_slug": "personal"}).raise_for_status()
    page.goto(wizard.url)
    _fill(page, flysim, creds, "old-bot")
    page.click("#check")
    expect(page.locator("#problem")).to_contain_text("old-bot-relay already exist in 'personal'")
    expect(page.locator("#error-prefix")).to_be_visible()
    shot("already-exists", full_page=False)
    page.click("#problem-link")  # "already exists" leads to teardown, the prefix filled in
    expect(page.locator("#prefix")).to_have_value("old-bot")
    assert page.locator("label:has(#confirm)").bounding_box()["height"] >= 44
    assert page.title() == "Remove a deploy · Self-hosted deploy"
    shot("teardown-prefilled")

    # A plan cancelled, then its page reopened (the back button): it says so.
    page.goto(wizard.url)
    _fill(page, flysim, creds, "changed")
    page.click("#check")
    expect(page.locator("#token-ok")).to_be_visible()
    plan_url = page.url
    page.click("#cancel")
    page.goto(plan_url)
    expect(page.locator("#cancelled")).to_contain_text("cancelled before anything was created")
    shot("cancelled")

    # A form far too large (sent without the page's script, which its maxlength would stop): a page in words.
    page.goto(wizard.url)
    page.evaluate("""() => { const f = document.createElement('form'); f.method = 'post'; f.action = '/plan';
        const t = document.createElement('textarea'); t.name = 'prefix'; t.value = 'x'.repeat(1000000);
        f.appendChild(t); document.body.appendChild(f); f.submit(); }""")
    expect(page.locator("h1")).to_have_text("Form too large")
    expect(page.locator("#problem")).to_contain_text("The form was far too large (1.0 MB)")
    assert "x" * 100 not in page.content()
    shot("too-large")
