"""The token is checked first, reading only: which org, whether it can create apps, what exists."""

from __future__ import annotations

import pytest

from flysim.testing import FlysimServer
from selfhosted.account import AccountError, check_account
from selfhosted.settings import parse_settings
from selfhosted.target import flysim_target


def _mutations(flysim: FlysimServer) -> list[dict]:
    return [c for c in flysim.calls() if c.get("mutating")]


def test_a_good_token_names_its_org_and_creates_nothing(flysim: FlysimServer) -> None:
    account = check_account(flysim_target(flysim.url), flysim.token, parse_settings({"prefix": "alice"}))
    assert (account.org_slug, account.can_create_apps, account.existing_apps) == ("personal", True, [])
    assert _mutations(flysim) == []


def test_existing_apps_of_the_plan_are_reported(flysim: FlysimServer) -> None:
    with flysim.client() as http:
        http.post("/v1/apps", json={"app_name": "alice-relay", "org_slug": "personal"}).raise_for_status()
    account = check_account(flysim_target(flysim.url), flysim.token, parse_settings({"prefix": "alice"}))
    assert account.existing_apps == ["alice-relay"]


def test_an_app_name_taken_in_another_org_is_refused(flysim: FlysimServer) -> None:
    with flysim.client() as http:
        http.post("/v1/apps", json={"app_name": "alice-vm", "org_slug": "other-org"}).raise_for_status()
    with pytest.raises(AccountError, match="app name 'alice-vm', which another organization already has") as exc:
        check_account(flysim_target(flysim.url), flysim.token, parse_settings({"prefix": "alice"}))
    assert exc.value.field == "prefix"  # the wizard marks the prefix, not the token


def test_a_wrong_token_is_refused_without_echoing_it(flysim: FlysimServer) -> None:
    wrong = "fo1_wrong-token-value-0123456789"
    with pytest.raises(AccountError) as exc:
        check_account(flysim_target(flysim.url), wrong, parse_settings({"prefix": "alice"}))
    assert "refused the token" in str(exc.value)
    assert wrong not in str(exc.value)


def test_an_unknown_org_is_named(flysim: FlysimServer) -> None:
    with pytest.raises(AccountError, match="This token can't see the organization 'nope'.*Or correct the organization"):
        check_account(flysim_target(flysim.url), flysim.token, parse_settings({"prefix": "alice", "org": "nope"}))


def test_a_token_limited_to_one_app_cannot_create_apps(flysim: FlysimServer) -> None:
    with flysim.client() as http:
        http.post("/v1/apps", json={"app_name": "someapp", "org_slug": "personal"}).raise_for_status()
        app_token = http.post("/v1/apps/someapp/deploy_token", json={}).json()["token"]
    with pytest.raises(AccountError) as exc:
        check_account(flysim_target(flysim.url), app_token, parse_settings({"prefix": "alice"}))
    # Fly shows a deploy token no org: the message says what such a token is and what to use instead.
    assert "A deploy token is limited to one app and can't create apps: use an org token" in str(exc.value)
    assert "Fly dashboard: Tokens" in str(exc.value) and exc.value.field == "fly_token"


def test_an_unreachable_api_is_said_in_words() -> None:
    with pytest.raises(AccountError, match="can't be reached"):
        check_account(flysim_target("http://127.0.0.1:9"), "token-value", parse_settings({"prefix": "alice"}))



def test_teardown_leaves_an_app_whose_machines_it_did_not_make(flysim: FlysimServer) -> None:
    """A teardown by name reads the apps at the moment it acts: an app of the prefix's name whose machine
    carries no marker of the pair (someone's own app) is left alone; the pair's own app is removed."""
    from selfhosted.component import MARKER
    from selfhosted.runner import run_teardown

    with flysim.client() as http:
        for app, metadata in (("blog-vm", {}), ("blog-relay", {MARKER: "blog"})):
            http.post("/v1/apps", json={"app_name": app, "org_slug": "personal"}).raise_for_status()
            http.post(f"/v1/apps/{app}/machines", json={"name": f"{app}-0", "region": "ams", "config": {
                "image": "registry.fly.io/artifact-relay:latest", "metadata": metadata}}).raise_for_status()
    steps: list = []
    left = run_teardown(flysim_target(flysim.url), parse_settings({"prefix": "blog"}), flysim.token, steps.append)
    assert left == ["blog-vm"]
    assert any("blog-vm has machines the self-hosted setup did not make" in s.text and "left alone" in s.text
               for s in steps)
    assert [a["name"] for a in flysim.state()["apps"]] == ["blog-vm"]
