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

pytestmark = pytest.mark.e2e
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

    def __call__(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.dir / f"{self.n:02d}-{name}.png"), full_page=True)


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
    _no_credential(page, secret_values(creds, flysim.token))
    shot("failed")
    assert _apps(flysim, "sad") == []


def test_bad_input_is_shown_beside_its_field_and_secrets_are_not_echoed(
        wizard: WizardServer, flysim: FlysimServer, phone: tuple[Page, Shots], creds: dict[str, str]) -> None:
    page, shot = phone
    page.goto(wizard.url)
    _fill(page, flysim, creds, "Bad_Prefix")
    page.fill("#twilio_account_sid", "ACnot-a-real-sid-value")
    page.click("#check")
    expect(page.locator("#error-prefix")).to_contain_text("lowercase letters, digits and hyphens")
    expect(page.locator("#error-twilio_account_sid")).to_contain_text("is not a Twilio Account SID")
    expect(page.locator("#prefix")).to_have_value("Bad_Prefix")  # plain fields kept
    for field in ("#fly_token", "#anthropic_api_key", "#twilio_auth_token", "#twilio_account_sid"):
        expect(page.locator(field)).to_have_value("")  # secret fields never sent back
    _no_credential(page, {**secret_values(creds, flysim.token), "sid": "ACnot-a-real-sid-value"})
    shot("errors")
    assert flysim.calls() == []  # refused before any API call
