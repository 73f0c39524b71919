"""The bad-config corpus against the config model, in-process: every case is refused before any
resource exists, in one line that names the key, says what is wrong in words and how to fix it, and
never repeats a credential."""

from __future__ import annotations

import re

import pytest

from components.config import ConfigError, parse_stack_config
from tests.badinput.configs import CONFIGS, GOOD, BadConfig

# Signs of a bare regex in a message: anchors, classes, escapes.
REGEX = re.compile(r"\^\[|\[a-z|\\[dswS.]|\]\{|\]\+|\$['\"]")


def test_the_corpus_is_big_enough() -> None:
    assert len(CONFIGS) >= 80


def test_the_good_config_passes() -> None:
    parsed = parse_stack_config(GOOD, "org1")
    assert parsed.slice.primary_region == "syd" and parsed.endpoint.api_base_url == "https://api.machines.dev"


@pytest.mark.parametrize("case", CONFIGS, ids=[c.id for c in CONFIGS])
def test_bad_config_is_refused_in_words(case: BadConfig) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_stack_config(case.values(), case.stack, case.secret)
    message = str(exc.value)
    assert message.startswith("invalid stack configuration: ")
    assert "\n" not in message, "Pulumi's summary shows one line"
    for words in case.expect:
        assert words in message
    assert not REGEX.search(message), message
    assert "Traceback" not in message and "ValidationError" not in message and "pydantic" not in message
    if case.hidden:
        assert case.hidden not in message


def test_plain_publishable_key_is_a_warning_with_the_command() -> None:
    parsed = parse_stack_config({**GOOD, "artifact-slice:clerkPublishableKey": "pk_live_abc"}, "org1")
    assert parsed.warnings == ["artifact-slice:clerkPublishableKey is set in plain text; this project keeps it "
                               "secret: set it as a secret: `pulumi config set --secret "
                               "artifact-slice:clerkPublishableKey <value>`"]


def test_secrets_set_with_secret_pass() -> None:
    values = {**GOOD, "artifact-slice:clerkSecretKey": "sk_" "live_0123456789abcdefghij",
              "artifact-slice:clerkPublishableKey": "pk_live_0123456789",
              "fly:apiToken": "FlyV1 fm" "2_abcdefghijklmnopqrst"}
    parsed = parse_stack_config(values, "org1", {"artifact-slice:clerkSecretKey", "artifact-slice:clerkPublishableKey",
                                                 "fly:apiToken"})
    assert parsed.warnings == []


def test_other_providers_namespaces_are_left_alone() -> None:
    assert parse_stack_config({**GOOD, "aws:region": "us-east-1", "pulumi:tags": "{}"}, "org1").warnings == []


@pytest.mark.parametrize("region", ["syd", "ams", "iad", "fra", "nrt", "jnb"])
def test_known_regions_pass(region: str) -> None:
    assert parse_stack_config({**GOOD, "artifact-slice:primaryRegion": region}, "org1").slice.primary_region == region


@pytest.mark.parametrize("image", ["registry.fly.io/artifact-fly-router:2026.11.1", "nginx", "nginx:1.27-alpine",
                                   "ghcr.io/acme/tools/nfs:v1.2.3", "localhost:5000/x:dev",
                                   "registry.fly.io/a@sha256:" + "0" * 64, "docker.io/library/busybox:latest"])
def test_good_images_pass(image: str) -> None:
    assert parse_stack_config({**GOOD, "artifact-slice:nfsImage": image}, "org1").slice.nfs_image == image


@pytest.mark.parametrize("url", ["http://127.0.0.1:4280", "http://localhost:8080", "https://api.fly.io",
                                 "http://[::1]:4280"])
def test_local_and_ip_urls_pass(url: str) -> None:
    assert parse_stack_config({**GOOD, "fly:apiBaseUrl": url}, "org1").endpoint.api_base_url == url


NASTY = ["", " ", "\n", "\t\x00", "é" * 3, "💥", "a" * 5000, "-", ".", "..", "/", "://", "0", "-1", "1e9", "NaN",
         "true", "null", "[]", "{}", '{"a": 1}', "${HOME}", "$(id)", "'; DROP", "https://", "http://[::1", "a\nb",
         "FlyV1 fm2_" + "x" * 30, "sk_live_" + "y" * 24]


@pytest.mark.parametrize("key", sorted({*GOOD, "artifact-slice:nfsVolumeSizeGb", "artifact-slice:protectVolumes",
                                        "artifact-slice:routerImage", "artifact-slice:prefix",
                                        "artifact-slice:tokenExpiryHours", "fly:apiToken"}))
def test_any_value_of_any_key_is_accepted_or_refused_in_one_line(key: str) -> None:
    for value in NASTY:
        try:
            parse_stack_config({**GOOD, key: value}, "org1")
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message and key in message, (value, message)
            assert "x" * 30 not in message and "y" * 24 not in message and "a" * 50 not in message, message
