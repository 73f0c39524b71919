"""Stack config is validated before any API call, and the message names the key, the problem, the fix."""

from __future__ import annotations

import pytest

from components.config import ConfigError, parse_fly_endpoint, parse_slice_config


def test_valid_config_with_prefix_from_stack_name() -> None:
    config = parse_slice_config({"org": "org1", "primaryRegion": "syd"}, "org1-e2e-4242")
    assert config.prefix == "org1-e2e-4242"
    assert config.nfs_volume_size_gb == 10
    assert config.primary_region == "syd"


def test_explicit_prefix_wins() -> None:
    assert parse_slice_config({"org": "org1", "primaryRegion": "syd", "prefix": "acme"}, "org1").prefix == "acme"


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
        parse_fly_endpoint({"flapsBaseUrl": "api.machines.dev"})
    assert "fly:flapsBaseUrl" in str(exc.value)
