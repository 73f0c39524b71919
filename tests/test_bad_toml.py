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


def _mutations(data: bytes, rng) -> bytes:
    lines = data.split(b"\n")
    kind = rng.randrange(4)
    i = rng.randrange(len(lines))
    if kind == 0:  # drop a line
        del lines[i]
    elif kind == 1:  # duplicate a line elsewhere
        lines.insert(rng.randrange(len(lines)), lines[i])
    elif kind == 2:  # swap a value for another shape
        if b"=" in lines[i]:
            key = lines[i].split(b"=", 1)[0]
            lines[i] = key + b"= " + rng.choice([b"1", b"-1", b'"x"', b"true", b"[]", b"{}", b'["a", 1]', b"1.5",
                                                 b'"1gb"', b'"10s"', b"{ a = 1 }"])
    else:  # corrupt a byte
        line = bytearray(lines[i] or b" ")
        line[rng.randrange(len(line))] = rng.randrange(256)
        lines[i] = bytes(line)
    return b"\n".join(lines)


def test_no_mutation_of_a_deploy_toml_escapes_as_anything_but_a_message(tmp_path: Path, config) -> None:
    """Random edits of the real files (seeded, so a failure replays): each one is accepted or refused
    with a DeployConfigError naming its file, never another exception."""
    import random

    from components.deploy import _load

    rng = random.Random(20261122)
    deploy = _deploy_dir(tmp_path)
    refused = 0
    originals = {p.name: p.read_bytes() for p in deploy.glob("fly.*.toml")}
    for round_ in range(300):
        name = sorted(originals)[round_ % len(originals)]
        data = originals[name]
        for _ in range(rng.randrange(1, 4)):
            data = _mutations(data, rng)
        (deploy / name).write_bytes(data)
        _load.cache_clear()  # the program reads each file once; here each round is a new program
        try:
            preflight(config, deploy)
        except DeployConfigError as exc:
            refused += 1
            assert str(exc).startswith(f"deploy/{name}") and "\n" not in str(exc), (round_, str(exc))
        finally:
            (deploy / name).write_bytes(originals[name])
    assert 100 < refused < 300  # most edits break something; some (a dropped comment) do not
