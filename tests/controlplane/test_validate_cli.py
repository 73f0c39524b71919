"""`python -m controlplane validate`: phase 6 by hand, the same checks `up` runs; what it prints, its exit
code, and what it imports (neither Pulumi nor the MCP SDK: issue 11's budget for the phase 6 step)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from controlplane_helpers import REPO, SliceWorld, shared_world


@pytest.fixture(scope="module")
def world() -> Iterator[SliceWorld]:
    with shared_world() as world:
        yield world


def _validate(world: SliceWorld, tmp_path: Path, *python_flags: str) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(world.manifest))
    world.flysim.reset_rate_limits()
    return subprocess.run([sys.executable, *python_flags, "-m", "controlplane", "validate", "--manifest", str(manifest)],
                          env={"FLY_ORG_TOKEN": world.token, "PYTHONPATH": str(REPO), "PATH": os.environ["PATH"]},
                          cwd=str(REPO), capture_output=True, text=True, timeout=120)


def test_a_good_slice_passes_and_nothing_changes(world: SliceWorld, tmp_path: Path) -> None:
    world.flysim.clear_calls()
    result = _validate(world, tmp_path, "-X", "importtime")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS worker pool s1-worker-pool has no machines" in result.stdout
    assert "PASS a synthetic customer app can be provisioned (ensure_app preflight)" in result.stdout
    assert result.stdout.rstrip().endswith("passed, 0 failed")
    assert world.mutations() == []
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "controlplane.infra" in imported
    assert not {m for m in imported if m.split(".")[0] in ("pulumi", "mcp", "mcp_types")}


def test_worker_machines_fail_naming_the_check(world: SliceWorld, tmp_path: Path) -> None:
    pool = world.manifest["apps"]["worker_pool"]
    with world.admin() as fly:
        worker = fly.create_machine(pool["name"], pool["machine_template"], region="syd")
    try:
        result = _validate(world, tmp_path)
    finally:
        with world.admin() as fly:
            fly.delete_machine(pool["name"], worker.id, force=True)
    assert result.returncode == 1
    assert f"FAIL worker pool s1-worker-pool has no machines: 1 found: {worker.id}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr and world.token not in result.stdout + result.stderr
