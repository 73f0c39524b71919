"""Bad input of every kind is refused before any API call, each message naming the field and the fix,
never echoing a credential."""

from __future__ import annotations

import re

import pytest

from selfhosted.settings import FIELDS, SettingsError, describe, parse, parse_form, parse_settings, parse_teardown

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


# -- what a phone pastes: cleaned once here, so the wizard and the CLI both get it ----------------------

@pytest.mark.parametrize("dirt", ["\u200b", "\ufeff", "\u00a0", "\r\n", "\n", "\t", " \u2060"])
def test_invisible_characters_at_the_ends_are_dropped(dirt: str) -> None:
    creds = {k: dirt + v + dirt for k, v in GOOD_CREDS.items()}
    settings, credentials = parse({"prefix": dirt + "alice" + dirt, "org": "personal" + dirt}, creds)
    assert (settings.prefix, settings.org) == ("alice", "personal")
    assert credentials.token == GOOD_CREDS["fly_token"]
    assert credentials.relay_secrets()["TWILIO_ACCOUNT_SID"] == GOOD_CREDS["twilio_account_sid"]


@pytest.mark.parametrize("char", ["\u200b", "\ufeff", "\u200d", "\u00ad"])
def test_a_zero_width_character_inside_a_token_is_dropped_and_said(char: str) -> None:
    token = GOOD_CREDS["fly_token"]
    parsed = parse_form({"prefix": "alice"}, {**GOOD_CREDS, "fly_token": token[:10] + char + token[10:]})
    assert parsed.credentials.token == token
    assert parsed.notes == [f"The Fly API token held an invisible character ({describe(char)}), as a phone's paste "
                            "can add; removed."]


@pytest.mark.parametrize(("field", "value", "words"), [
    ("fly_token", "fo1_abc\r\ndef-0123456789", "contains a line break: paste it again as one line"),
    ("fly_token", "fo1_abc\u00a0def-0123456789", "contains an invisible character (U+00A0 NO-BREAK SPACE) that no "
                                                  "Fly API token has"),
    ("anthropic_api_key", "sk-ant-\u201ckey\u201d-0123456789abcdef", "contains a character (U+201C LEFT DOUBLE "
                                                                     "QUOTATION MARK) that no Anthropic API key has"),
    ("twilio_auth_token", "abc\tdef", "(U+0009 TAB)"),
    ("prefix", "ali\u200bce", "contains an invisible character (U+200B ZERO WIDTH SPACE) at character 4"),
    ("org", "per\u00a0sonal", "(U+00A0 NO-BREAK SPACE) at character 4"),
])
def test_other_characters_are_refused_in_words_naming_them(field: str, value: str, words: str) -> None:
    settings = {"prefix": "alice"} | ({field: value} if field in ("prefix", "org") else {})
    creds = GOOD_CREDS | ({field: value} if field not in ("prefix", "org") else {})
    with pytest.raises(SettingsError) as exc:
        parse(settings, creds)
    assert set(exc.value.problems) == {field}  # said once: not also "is required" for the value refused
    assert words in exc.value.problems[field]
    assert value not in str(exc.value)


def test_a_fly_token_keeps_the_space_after_its_scheme() -> None:
    _, credentials = parse({"prefix": "alice"}, {**GOOD_CREDS, "fly_token": "FlyV1 fm2_abc,fm2_def"})
    assert credentials.token == "FlyV1 fm2_abc,fm2_def"


@pytest.mark.parametrize("field", ["prefix", "org", "region", "fly_token", "anthropic_api_key"])
def test_an_oversized_value_is_refused_by_its_length_and_never_echoed(field: str) -> None:
    huge = "x" * 1_000_000
    with pytest.raises(SettingsError) as exc:
        if field in ("fly_token", "anthropic_api_key"):
            parse({"prefix": "alice"}, {**GOOD_CREDS, field: huge})
        else:
            parse({"prefix": "alice", field: huge}, GOOD_CREDS)
    assert exc.value.problems[field].startswith(f"is 1,000,000 characters long; at most {FIELDS[field].max_length:,}")
    assert "x" * 100 not in str(exc.value)


def test_teardown_cleans_its_token_the_same_way() -> None:
    settings, token = parse_teardown({"prefix": "alice\n", "org": ""}, "\ufefffo1_abc\u200bdef\r\n")
    assert (settings.prefix, settings.org, token) == ("alice", "personal", "fo1_abcdef")
    with pytest.raises(SettingsError) as exc:
        parse_teardown({"prefix": "alice"}, "fo1_abc\u00e9")
    assert "contains a character (U+00E9 LATIN SMALL LETTER E WITH ACUTE)" in exc.value.problems["fly_token"]


def test_the_forms_patterns_are_the_servers_checks() -> None:
    """The wizard's inputs carry these as `pattern` (JavaScript anchors them itself)."""
    prefix = re.compile(f"^(?:{FIELDS['prefix'].html_pattern})$")
    for good in ("al", "alice-bot", "a" * 30):
        assert prefix.match(good) and parse_settings({"prefix": good})
    for bad in ("Alice", "al--ice", "alice-", "a" * 31, "1alice"):
        assert not prefix.match(bad)
        with pytest.raises(SettingsError):
            parse_settings({"prefix": bad})
