"""Bad input through the real engine: `pulumi preview` of a stack with a bad config or a bad
deploy/*.toml fails with the one-line message the corpus tests check in-process, no traceback, and
not a single call reaches flysim."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.badinput.configs import CONFIGS, BadConfig
from tests.badinput.tomls import DEPLOY, TOMLS, BadToml

from .harness import make_stack

pytestmark = pytest.mark.e2e

CONFIG_SAMPLE = ["region-city-name", "org-300-chars", "domain-leading-dash", "fly-key-typo", "clerk-secret-plain",
                 "image-space"]
TOML_SAMPLE = ["two-mounts", "invalid-utf8", "nfs-file-missing", "worker-check-name-list"]


def _preview_fails(s, flysim) -> str:
    flysim.clear_calls()
    with pytest.raises(auto.errors.CommandError) as exc:
        s.preview()
    output = str(exc.value)
    assert "Traceback" not in output, output
    assert flysim.calls() == []
    return output


@pytest.mark.parametrize("case", [c for c in CONFIGS if c.id in CONFIG_SAMPLE], ids=lambda c: c.id)
def test_bad_config_fails_the_preview_before_any_call(tmp_path: Path, pulumi_bin: Path, flysim, case: BadConfig
                                                      ) -> None:
    assert all(v is not None for v in case.set.values())
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token, config=dict(case.set),  # type: ignore[arg-type]
                   secret_config={k: v for k, v in case.set.items() if k in case.secret})  # type: ignore[misc]
    output = _preview_fails(s, flysim)
    assert "invalid stack configuration: " in output
    for words in case.expect:
        assert words in output, output
    if case.hidden:
        assert case.hidden not in output


@pytest.mark.parametrize("case", [c for c in TOMLS if c.id in TOML_SAMPLE], ids=lambda c: c.id)
def test_bad_toml_fails_the_preview_before_any_call(tmp_path: Path, pulumi_bin: Path, flysim, case: BadToml) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token)
    deploy = s.work_dir / "deploy"
    deploy.unlink()  # the harness links the checkout's deploy/; this project gets a copy of its own
    shutil.copytree(DEPLOY, deploy)
    (deploy / f"fly.{case.service}.toml").write_bytes(case.text())
    output = _preview_fails(s, flysim)
    line = case.line()
    assert (f"{case.file}:{line}: " if line else f"{case.file}: ") in output, output
    for words in case.expect:
        assert words in output, output
