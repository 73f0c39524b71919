"""Stack config is validated before any API call, and the message names the key, the problem, the fix."""

from __future__ import annotations

import pytest

import pulumi

from components.config import ConfigError, _engine_config, parse_slice_config, parse_stack_config


def test_valid_config_with_prefix_from_stack_name() -> None:
    config = parse_slice_config({"org": "org1", "primaryRegion": "syd", "domain": "e2e.example.com"}, "org1-e2e-4242")
    assert config.prefix == "org1-e2e-4242"
    assert config.nfs_volume_size_gb == 10
    assert config.primary_region == "syd"


def test_explicit_prefix_wins() -> None:
    assert parse_slice_config({"org": "org1", "primaryRegion": "syd", "prefix": "acme", "domain": "a.example.com"}, "org1").prefix == "acme"


def test_missing_org_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_slice_config({"primaryRegion": "syd"}, "org1")
    assert "artifact-slice:org" in str(exc.value)
    assert "pulumi config set artifact-slice:org" in str(exc.value)


def test_bad_region_names_key_and_value() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_slice_config({"org": "org1", "primaryRegion": "Sydney"}, "org1")
    message = str(exc.value)
    assert "artifact-slice:primaryRegion" in message and "'Sydney'" in message


def test_volume_size_bounds() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_slice_config({"org": "org1", "primaryRegion": "syd", "nfsVolumeSizeGb": 0}, "org1")
    assert "artifact-slice:nfsVolumeSizeGb" in str(exc.value)


def test_stack_name_that_cannot_prefix_app_names() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_slice_config({"org": "org1", "primaryRegion": "syd"}, "Org_1")
    assert "artifact-slice:prefix" in str(exc.value) and "lowercase" in str(exc.value)


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_slice_config({"org": "org1", "primaryRegion": "syd", "nfsVolumeSize": 3}, "org1")
    assert "artifact-slice:nfsVolumeSize" in str(exc.value) and "not a known setting" in str(exc.value)


def test_fly_endpoint_must_be_a_url() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_stack_config({"artifact-slice:org": "o", "artifact-slice:primaryRegion": "syd",
                            "fly:flapsBaseUrl": "api.machines.dev"}, "local")
    assert "fly:flapsBaseUrl" in str(exc.value) and "https://api.machines.dev" in str(exc.value)


def test_the_engine_config_and_its_secret_keys_are_read_as_the_sdk_holds_them() -> None:
    values = {"artifact-slice:org": "personal", "fly:apiToken": "FlyV1 fm" "2_abcdefghijklmnopqrstu"}
    pulumi.runtime.set_all_config(values, ["fly:apiToken"])
    try:
        assert _engine_config() == (values, {"fly:apiToken"})
    finally:
        pulumi.runtime.set_all_config({}, [])


def test_domain_is_required_except_on_the_local_stack() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_slice_config({"org": "org1", "primaryRegion": "syd"}, "org1")
    assert "artifact-slice:domain" in str(exc.value) and "pulumi config set" in str(exc.value)
    assert parse_slice_config({"org": "personal", "primaryRegion": "syd"}, "local").domain == "local.artifact.local"


def test_bad_image_reference_names_key_value_and_example() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_slice_config({"org": "org1", "primaryRegion": "syd", "domain": "a.example.com",
                            "routerImage": "Router Image"}, "org1")
    message = str(exc.value)
    assert "artifact-slice:routerImage" in message and "'Router Image'" in message and "registry.fly.io/" in message


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_slice_config({"org": "Org 1", "primaryRegion": "sydney", "domain": "x"}, "org1")
    message = str(exc.value)
    for key in ("artifact-slice:org", "artifact-slice:primaryRegion", "artifact-slice:domain"):
        assert key in message
