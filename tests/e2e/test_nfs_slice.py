"""The walking skeleton, end to end: a real `pulumi up` of the NFS tier against flysim."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import make_stack

pytestmark = pytest.mark.e2e

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def _apps(state: dict, prefix: str) -> dict[str, dict]:
    return {a["name"]: a for a in state["apps"] if a["name"].startswith(prefix + "-")}


def test_up_preview_destroy(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token)
    prefix = s.stack.name

    up = s.up()
    assert up.summary.result == "succeeded"

    apps = _apps(flysim.state(), prefix)
    assert set(apps) == {f"{prefix}-nfs"}
    nfs = apps[f"{prefix}-nfs"]
    assert [v["name"] for v in nfs["volumes"]] == ["nfsdata"]
    assert len(nfs["machines"]) == 1 and nfs["machines"][0]["state"] == "started"
    assert nfs["volumes"][0]["attached_machine_id"] == nfs["machines"][0]["id"]

    outputs = s.outputs()
    manifest = outputs["apps"]["nfs"]
    assert manifest["name"] == f"{prefix}-nfs"
    assert manifest["machines"][0]["id"] == nfs["machines"][0]["id"]
    assert manifest["volumes"][0]["id"] == nfs["volumes"][0]["id"]

    # A no-change preview reports no changes and makes no mutating call.
    flysim.clear_calls()
    preview = s.preview()
    assert set(preview.change_summary) <= {"same"}, preview.change_summary
    assert [c for c in flysim.calls() if c["method"] in MUTATING] == []

    # ... and neither does a no-change up.
    up_again = s.up()
    assert set(up_again.summary.resource_changes or {}) <= {"same"}
    assert [c for c in flysim.calls() if c["method"] in MUTATING] == []

    s.destroy()
    assert _apps(flysim.state(), prefix) == {}
    s.remove()


def test_phase6_validation_passes_on_a_fresh_slice(tmp_path: Path, pulumi_bin: Path, flysim, monkeypatch) -> None:
    import os

    from ops.__main__ import main

    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token)
    assert s.up().summary.result == "succeeded"
    for key, value in s.stack.workspace.env_vars.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", s.stack.workspace.env_vars["PATH"] + os.pathsep + os.environ["PATH"])
    assert main(["validate", "--stack", s.stack.name, "--work-dir", str(s.work_dir)]) == 0
    # the synthetic customer app is gone again
    assert [a["name"] for a in flysim.state()["apps"] if "synthetic" in a["name"]] == []
    s.destroy()
