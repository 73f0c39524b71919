"""The policy pack's per-stack settings (`artifact-policy:*` stack config, as the engine hands them to the pack:
strings): defaults from the stack's name, overrides, and bad values refused with the key and the fix. The rules
themselves run through the real CLI in tests/e2e/test_policy.py."""

from __future__ import annotations

import pytest

from policy.rules import DEFAULT_LEVELS, SettingsError, settings_from


def test_the_stack_name_decides_ephemeral_and_production_unless_config_says() -> None:
    assert settings_from("org1-e2e-123", {}).ephemeral and not settings_from("org1", {}).ephemeral
    prod = settings_from("acme-prod", {})
    assert prod.production and prod.levels["images-pinned-by-digest"] == "mandatory"
    assert settings_from("org1", {}).levels == DEFAULT_LEVELS
    assert not settings_from("org1-e2e-1", {"ephemeral": "false"}).ephemeral
    relaxed = settings_from("acme-prod", {"images-pinned-by-digest": "advisory"})  # the stack's word wins
    assert relaxed.production and relaxed.levels["images-pinned-by-digest"] == "advisory"


def test_overrides_are_read_from_their_text_form() -> None:
    s = settings_from("org1", {"allowedRegions": '["syd", "ams"]', "maxTokenExpiryHours": "2160",
                               "no-public-address": "Disabled", "allowedSizes": "shared-cpu-1x, performance-2x"})
    assert s.allowed_regions == {"syd", "ams"} and s.max_token_hours == 2160
    assert s.levels["no-public-address"] == "disabled"
    assert s.allowed_sizes == {"shared-cpu-1x", "performance-2x"}


@pytest.mark.parametrize(("config", "expected"), [
    ({"no-public-adress": "advisory"}, "artifact-policy:no-public-adress: is not a setting"),
    ({"token-expiry-bounded": "strict"}, "artifact-policy:token-expiry-bounded: 'strict' is not one of advisory"),
    ({"allowedRegions": "syd,sydney"}, "artifact-policy:allowedRegions: 'sydney' is not a Fly region code"),
    ({"maxTokenExpiryHours": "1y"}, "artifact-policy:maxTokenExpiryHours: '1y' is not a whole number"),
    ({"production": "yes"}, "artifact-policy:production: 'yes' is not true or false"),
    ({"allowedRegions": "[syd"}, "artifact-policy:allowedRegions: is not a JSON list"),
])
def test_a_bad_setting_names_the_key_and_the_fix(config: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from("org1", config)
    assert str(caught.value).startswith(expected)
