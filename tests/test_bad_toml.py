"""The bad-toml corpus: each case edits one of the project's real deploy/fly.*.toml files, and the
program's preflight (what runs before any resource is registered) refuses it in one line that names
the file and line, the key, the problem in words and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.config import parse_stack_config
from components.deploy import DEPLOY_DIR, DeployConfigError, preflight
from tests.badinput.configs import GOOD
from tests.badinput.tomls import TOMLS, BadToml


@pytest.fixture
def config():
    return parse_stack_config(GOOD, "org1").slice


def _deploy_dir(tmp_path: Path, case: BadToml | None = None) -> Path:
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY_DIR, target)
    if case is not None:
        (target / f"fly.{case.service}.toml").write_bytes(case.text())
    return target


def test_the_corpus_is_big_enough() -> None:
    assert len(TOMLS) >= 15


def test_the_project_tomls_pass(tmp_path: Path, config) -> None:
    preflight(config, _deploy_dir(tmp_path))


@pytest.mark.parametrize("case", TOMLS, ids=[c.id for c in TOMLS])
def test_bad_toml_is_refused_naming_file_and_line(tmp_path: Path, config, case: BadToml) -> None:
    with pytest.raises(DeployConfigError) as exc:
        preflight(config, _deploy_dir(tmp_path, case))
    message = str(exc.value)
    line = case.line()
    assert message.startswith(f"{case.file}:{line}: " if line else f"{case.file}: "), message
    assert "\n" not in message and "Traceback" not in message
    for words in case.expect:
        assert words in message, message
    assert "Fix: " in message
    assert "sk_live_" not in message  # a credential is never repeated


def test_problems_in_several_files_are_reported_together(tmp_path: Path, config) -> None:
    deploy = _deploy_dir(tmp_path)
    for case in (c for c in TOMLS if c.id in ("two-mounts", "router-port-words")):
        (deploy / f"fly.{case.service}.toml").write_bytes(case.text())
    message = str(pytest.raises(DeployConfigError, preflight, config, deploy).value)
    assert "deploy/fly.nfs.toml:" in message and "; deploy/fly.router.toml:" in message


def test_a_stack_image_replaces_a_missing_build_image(tmp_path: Path) -> None:
    case = next(c for c in TOMLS if c.id == "exec-image-missing")
    config = parse_stack_config({**GOOD, "artifact-slice:execImage": "registry.fly.io/exec:1"}, "org1").slice
    preflight(config, _deploy_dir(tmp_path, case))


def test_a_missing_toml_is_named(tmp_path: Path, config) -> None:
    deploy = _deploy_dir(tmp_path)
    (deploy / "fly.exec.toml").unlink()
    message = str(pytest.raises(DeployConfigError, preflight, config, deploy).value)
    assert message.startswith("deploy/fly.exec.toml: cannot read the file (No such file or directory)")


def test_a_byte_order_mark_is_accepted(tmp_path: Path, config) -> None:
    deploy = _deploy_dir(tmp_path)
    path = deploy / "fly.router.toml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    preflight(config, deploy)
