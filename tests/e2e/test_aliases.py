"""A stack made by the previous provider layer (every resource typed `pulumi-python:dynamic:Resource`)
updates in place with this one: the aliases carry every resource over, nothing is replaced, created or
deleted, and the slice's machines at Fly are untouched."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from ops.workspace import link_project

from .harness import REPO, make_stack

pytestmark = pytest.mark.e2e

UNTYPED = "pulumi-python:dynamic:Resource"
TYPED_MARK = "pulumi-python:dynamic/fly"


def _previous_layer() -> str:
    """The newest commit of this clone's history whose providers are still untyped (the last of the previous
    layer), found by content rather than by hash, which would not survive a history rewrite."""
    commits = subprocess.run(["git", "-C", str(REPO), "rev-list", "HEAD"], check=True, capture_output=True,
                             text=True).stdout.split()
    for commit in commits:
        typed = subprocess.run(["git", "-C", str(REPO), "grep", "-q", TYPED_MARK, commit, "--", "fly/providers"])
        if typed.returncode == 1 and subprocess.run(
                ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}:fly/providers"]).returncode == 0:
            return commit
    raise AssertionError("no commit of this clone's history has the untyped provider layer: "
                         "the test needs a full clone (git clone without --depth)")


def _checkout(commit: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], check=True,
                             capture_output=True).stdout
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def test_a_stack_of_the_previous_layer_updates_in_place(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    old_code = _checkout(_previous_layer(), tmp_path / "previous-layer")
    link_project(tmp_path / "stack" / "project", repo=old_code)  # make_stack keeps links it finds
    s = make_stack(tmp_path / "stack", pulumi_bin, flysim.url, flysim.token,
                   secret_config={"artifact-slice:clerkSecretKey": "sk_sim_0123456789abcdef"})
    assert (s.work_dir / "fly").resolve() == (old_code / "fly").resolve()
    assert s.up().summary.result == "succeeded"
    state = s.stack.export_stack().deployment["resources"]
    assert sum(r["type"] == UNTYPED for r in state) >= 25
    machines_before = {a["name"]: [(m["id"], m["instance_id"]) for m in a["machines"] if m["state"] != "destroyed"]
                       for a in flysim.state()["apps"]}

    # The same project directory, now with this layer's code.
    for link in s.work_dir.iterdir():
        if link.is_symlink() and link.name != ".venv":
            link.unlink()
    link_project(s.work_dir)

    flysim.clear_calls()
    preview = s.preview()
    assert set(preview.change_summary) <= {"same", "update"}, preview.change_summary
    print("updates planned:", [line for line in preview.stdout.splitlines() if "(update)" in line])
    assert UNTYPED not in preview.stdout
    assert [c for c in flysim.calls() if c["mutating"]] == []
    up = s.up()
    assert set(up.summary.resource_changes or {}) <= {"same", "update"}, up.summary.resource_changes
    state = s.stack.export_stack().deployment["resources"]
    assert not [r["urn"] for r in state if r["type"] == UNTYPED]
    assert {r["type"] for r in state} >= {f"pulumi-python:dynamic/fly:{k}" for k in ("App", "Machine", "Volume")}
    machines_after = {a["name"]: [(m["id"], m["instance_id"]) for m in a["machines"] if m["state"] != "destroyed"]
                      for a in flysim.state()["apps"]}
    assert {k: [i for i, _ in v] for k, v in machines_after.items()} == {
        k: [i for i, _ in v] for k, v in machines_before.items()}
    # (The phase 6 validation, if it runs again, creates and deletes its synthetic app: not the slice's.)
    assert not [c for c in flysim.calls() if c["operation"] in ("Machines_create", "Machines_delete", "Apps_delete",
                                                                  "Volume_delete", "Volumes_create")
                and "-synthetic-" not in c["path"]]

    s.destroy()
    assert not [a for a in flysim.state()["apps"] if a["name"].startswith(s.stack.name + "-")]
