"""Bad input of every kind is refused before any API call, each message naming the field and the fix,
never echoing a credential."""

from __future__ import annotations

import pytest

from selfhosted.settings import SettingsError, parse, parse_settings

GOOD_CREDS = {"fly_token": "fo1_" + "t" * 40, "anthropic_api_key": "sk-ant-" + "k" * 40,
              "twilio_account_sid": "AC" + "0123456789abcdef" * 2, "twilio_auth_token": "secret-auth-token-value",
              "twilio_whatsapp_number": "+14155238886"}


@pytest.mark.parametrize("prefix", ["Alice", "alice_bot", "-alice", "alice-", "a", "1alice", "al--ice", "a" * 31,
                                    "alice bot", "alicé"])
def test_bad_prefixes_are_refused_with_the_rule(prefix: str) -> None:
    with pytest.raises(SettingsError) as exc:
        parse_settings({"prefix": prefix})
    assert set(exc.value.problems) == {"prefix"}
    assert "lowercase letters, digits and" in exc.value.problems["prefix"] or "hyphens" in exc.value.problems["prefix"]


@pytest.mark.parametrize("prefix", ["al", "alice", "alice-bot", "a1-b2-c3", "a" * 30])
def test_good_prefixes(prefix: str) -> None:
    settings = parse_settings({"prefix": prefix})
    assert (settings.relay_app, settings.vm_app) == (f"{prefix}-relay", f"{prefix}-vm")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("region", "mars", "is not a Fly region"),
    ("region", "AMS", "Fly region codes are lowercase: use 'ams'"),
    ("vm_size", "huge", "is not a size for the agent VM"),
    ("volume_size_gb", "0", "between 1 and 500"),
    ("volume_size_gb", "501", "between 1 and 500"),
    ("volume_size_gb", "ten", "whole number"),
    ("channel", "signal", "must be one of whatsapp, discord, telegram"),
    ("org", "Bad Org", "is not an organization slug"),
    ("relay_image", "not an image", "is not an image reference"),
])
def test_bad_settings_name_the_field(field: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError) as exc:
        parse({"prefix": "alice", field: value}, GOOD_CREDS)
    assert field in exc.value.problems
    assert words in exc.value.problems[field]


def test_every_problem_at_once_and_no_credential_echoed() -> None:
    bad_creds = {"fly_token": "", "anthropic_api_key": "sk-short-VALUE", "twilio_account_sid": "ACnot-a-sid-VALUE",
                 "twilio_auth_token": ""}
    with pytest.raises(SettingsError) as exc:
        parse({"prefix": "Bad", "region": "xxx"}, bad_creds)
    problems = exc.value.problems
    assert set(problems) >= {"prefix", "region", "fly_token", "anthropic_api_key", "twilio_account_sid",
                             "twilio_auth_token", "twilio_whatsapp_number"}
    text = str(exc.value) + repr(exc.value)
    assert "sk-short-VALUE" not in text and "ACnot-a-sid-VALUE" not in text


@pytest.mark.parametrize(("channel", "missing"), [("discord", "discord_bot_token"), ("telegram", "telegram_bot_token")])
def test_other_channels_need_their_token_and_not_twilio(channel: str, missing: str) -> None:
    creds = {"fly_token": GOOD_CREDS["fly_token"], "anthropic_api_key": GOOD_CREDS["anthropic_api_key"]}
    with pytest.raises(SettingsError) as exc:
        parse({"prefix": "alice", "channel": channel}, creds)
    assert set(exc.value.problems) == {missing}
    _, parsed = parse({"prefix": "alice", "channel": channel}, {**creds, missing: "bot-token-value-123"})
    assert list(parsed.relay_secrets().values()) == ["bot-token-value-123"]


def test_credentials_never_show_in_repr() -> None:
    _, credentials = parse({"prefix": "alice"}, GOOD_CREDS)
    shown = repr(credentials) + str(credentials)
    for name in ("fly_token", "anthropic_api_key", "twilio_account_sid", "twilio_auth_token"):
        assert GOOD_CREDS[name] not in shown
    assert credentials.relay_secrets() == {"TWILIO_ACCOUNT_SID": GOOD_CREDS["twilio_account_sid"],
                                           "TWILIO_AUTH_TOKEN": GOOD_CREDS["twilio_auth_token"]}
    assert credentials.vm_secrets() == {"ANTHROPIC_API_KEY": GOOD_CREDS["anthropic_api_key"]}
