"""`python -m ops e2e` against one slice brought up by the real engine on flysim (module-scoped, shared by
every run here): each scenario's happy and unhappy variants pass on their infra-level expectations, the
service-level ones are reported "not observable here", the evidence holds what the guide asks for with no
token or secret in it, and a run whose fault or check is taken away fails, naming why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flysim.testing import FlysimServer
from ops.e2e.scenario import SCENARIOS_DIR
from ops.workspace import REPO, local_slice_stack

CLERK_SECRET = "sk_sim_e2e_0123456789abcdef"
PASSPHRASE = "e2e-scenarios-passphrase"


@dataclass
class Slice:
    flysim: FlysimServer
    stack: str
    work_dir: Path
    env: dict[str, str]
    token: str  # the slice's control plane token
    outputs: dict  # the stack outputs, secret ones left out


@pytest.fixture(scope="module")
def slice_(tmp_path_factory: pytest.TempPathFactory, pulumi_bin: Path) -> Iterator[Slice]:
    root = tmp_path_factory.mktemp("e2e-scenarios")
    # Rate limits off: the runner's snapshots list four apps after every step, which Fly's 1/s-per-app limit
    # would only slow down (the client's waiting on 429s is tested in tests/test_fly_resilience.py).
    with FlysimServer(orgs=["personal"], rate_limit=False) as flysim:
        s = local_slice_stack(root, pulumi_bin, flysim.url, flysim.token, "scen",
                              secret_config={"artifact-slice:clerkSecretKey": CLERK_SECRET})
        s.up()
        outputs = s.outputs()
        token = outputs.pop("controlPlaneToken")
        env = {**s.stack.workspace.env_vars, "PULUMI_HOME": str(root / "pulumi-home")}
        yield Slice(flysim, "scen", s.work_dir, env, token, outputs)
        s.destroy()


def e2e(slice_: Slice, tmp_path: Path, *args: str, scenarios_dir: Path | None = None,
        env: dict[str, str] | None = None, strategy: tuple[str, ...] = ()) -> tuple[int, str, Path]:
    """The command as a user runs it, on the slice's stack (default: staging); returns (status, output,
    evidence dir)."""
    out = tmp_path / "artifacts"
    strategy = strategy or ("--strategy", "staging", "--stack", slice_.stack, "--work-dir", str(slice_.work_dir))
    command = [sys.executable, "-m", "ops", "e2e", *args, *strategy, "--out", str(out)]
    if scenarios_dir is not None:
        command += ["--scenarios-dir", str(scenarios_dir)]
    run_env = {**os.environ, **slice_.env, "FLY_API_TOKEN": slice_.flysim.token, "CLERK_SECRET_KEY": CLERK_SECRET,
               **(env or {})}
    done = subprocess.run(command, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=600)
    [evidence] = list(out.iterdir()) if out.is_dir() else [tmp_path / "none"]
    return done.returncode, done.stdout + done.stderr, evidence


def test_every_scenario_passes_on_flysim_with_evidence(slice_: Slice, tmp_path: Path) -> None:
    status, output, evidence = e2e(slice_, tmp_path, "--all", "--variant", "both")
    assert status == 0, output
    result = json.loads((evidence / "result.json").read_text())
    assert result["ok"] and result["target"] == "flysim"
    ran = {(r["scenario"], r["variant"]) for r in result["results"]}
    ids = {p.stem for p in SCENARIOS_DIR.glob("*.json")}
    assert ran == {(i, v) for i in ids for v in ("happy", "unhappy")}
    for r in result["results"]:
        statuses = {c["check"]: set() for c in r["expectations"]}
        for c in r["expectations"]:
            statuses[c["check"]].add(c["status"])
        # Infra-level expectations passed; the services' are never passed on flysim.
        assert statuses.pop("service", {"not_observable"}) == {"not_observable"}, r
        assert all(s == {"passed"} for s in statuses.values()), r
    # The faults really happened at Fly: the call log has them.
    ops = [c["operation"] for c in slice_.flysim.calls()]
    assert {"Machines_suspend", "Machines_stop", "Machines_restart", "Machines_exec", "Logs_get"} <= set(ops)

    # The evidence: input manifest, snapshots before and after each step, log excerpts, MCP transcripts,
    # the result and a summary.
    manifest = json.loads((evidence / "manifest.json").read_text())
    assert manifest["strategy"] == "staging" and manifest["slice"]["slice"] == "scen"
    assert set(manifest["scenario_files"]) == ids
    snapshots = sorted(p.name for p in (evidence / "FAULT-050" / "unhappy" / "snapshots").iterdir())
    assert snapshots == ["00-before.json", "01-suspend-nfs.json", "02-validate-during.json", "03-restart-nfs.json",
                         "04-validate-after.json", "05-nfs-logs-after.json"]
    during = json.loads((evidence / "FAULT-050" / "unhappy" / "snapshots" / "01-suspend-nfs.json").read_text())
    assert [m["state"] for m in during["nfs"]] == ["suspended"]
    excerpt = (evidence / "FAULT-050" / "unhappy" / "logs" / "nfs-logs-after.txt").read_text()
    assert "] syd [info] Machine suspended" in excerpt and "self-mount ok" not in excerpt  # only lines since
    assert "] syd [info] self-mount ok" in (evidence / "FAULT-050" / "happy" / "logs" / "nfs-logs.txt").read_text()
    transcripts = list((evidence / "mcp").glob("*.transcript.jsonl"))
    calls = [json.loads(line) for t in transcripts for line in t.read_text().splitlines()]
    assert {c["tool"] for c in calls} >= {"infra_manifest", "infra_list_machines", "infra_provision_org"}
    revoked = [c for c in calls if c["server"].startswith("minted") and not c["ok"]]
    assert revoked and "revoked" in revoked[0]["answer"]
    assert "not observable here" in (evidence / "summary.md").read_text()
    everything = "\n".join(p.read_text(errors="replace") for p in evidence.rglob("*") if p.is_file())
    for secret in (slice_.token, slice_.flysim.token, CLERK_SECRET):
        for piece in (secret, secret[:12], secret[-12:]):
            assert piece not in everything
    # Left as found: no e2e worker machine, the Clerk secret as before, the NFS machine started.
    state = {a["name"]: a for a in slice_.flysim.state()["apps"]}
    assert [m for m in state["scen-worker-pool"]["machines"] if m["state"] != "destroyed"] == []
    assert [m["state"] for m in state["scen-nfs"]["machines"]] == ["started"]
    assert "CLERK_SECRET_KEY" in state["scen-fly-router"]["secrets"]["names"]


def _without(scenario: str, variant: str, step: str, tmp_path: Path) -> Path:
    """The scenarios directory with one step of one variant switched off (the fault, or the check)."""
    directory = tmp_path / "scenarios"
    shutil.copytree(SCENARIOS_DIR, directory)
    path = directory / f"{scenario}.json"
    document = json.loads(path.read_text())
    body = document["variants"][variant]
    [target] = [s for phase in ("steps", "restore") for s in body.get(phase, []) if s["name"] == step]
    target["skip"] = True
    path.write_text(json.dumps(document))
    return directory


@pytest.mark.parametrize("scenario, variant, step, failing", [
    # The NFS drill with its validation taken away: "caught by validation" cannot pass unchecked.
    ("FAULT-050", "unhappy", "validate-during", "step validate-during did not run"),
    # A token that isn't revoked: the tool still answers, which the scenario must not accept.
    ("CONTROL-040", "unhappy", "revoke", "an answer without error, expected a tool error"),
    # No fault injected: the router keeps its Clerk secret.
    ("ROUTER-001", "unhappy", "remove-clerk-secret", "step remove-clerk-secret did not run"),
    # The worker is not killed while booting.
    ("EXEC-010", "unhappy", "worker-killed-booting", "after step worker-killed-booting: it did not run"),
    # The malformed manifest is not written back: the scenario leaves the fault and says so.
    ("AGENT-030", "unhappy", "write-back", "computers/images/basic.json is not JSON"),
    # The stopped worker is never started again.
    ("WORKER-020", "unhappy", "worker-rehydrated", "after step worker-rehydrated: it did not run"),
])
def test_a_scenario_fails_for_the_right_reason(slice_: Slice, tmp_path: Path, scenario: str, variant: str,
                                               step: str, failing: str) -> None:
    status, output, evidence = e2e(slice_, tmp_path, "--scenario", scenario, "--variant", variant,
                                   scenarios_dir=_without(scenario, variant, step, tmp_path))
    assert status == 1, output
    [result] = json.loads((evidence / "result.json").read_text())["results"]
    failed = [c["detail"] for c in result["expectations"] if c["status"] == "failed"]
    assert any(failing in detail for detail in failed), failed


def test_bad_usage_and_bad_scenario_files_are_refused_before_any_call(slice_: Slice, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "NET-060.json").write_text(json.dumps({"id": "NET-060", "title": "t", "variants": {
        "happy": {"steps": [{"name": "x", "do": "machine", "action": "explode", "app": "nfs"}],
                  "expect": [{"check": "machines", "app": "nfs", "state": "started"}]}}}))
    slice_.flysim.clear_calls()
    status, output, _ = e2e(slice_, tmp_path, "--all", scenarios_dir=broken)
    assert status == 2 and "NET-060.json: variants.happy.steps.0.machine.action" in output and "'restart'" in output
    status, output, _ = e2e(slice_, tmp_path, "--scenario", "NOPE-999")
    assert status == 2 and "unknown scenario NOPE-999" in output and "ROUTER-001" in output
    assert slice_.flysim.calls() == []
    assert "Traceback" not in output


def test_fixture_pool_sweeps_e2e_orphans_and_leaves_other_machines_alone(slice_: Slice, tmp_path: Path) -> None:
    """From a manifest file and FLY_ORG_TOKEN, as `pulumi stack output --json` gives it."""
    from fly import FlyClient, FlyConnection

    manifest = tmp_path / "outputs.json"
    manifest.write_text(json.dumps(slice_.outputs))
    pool = "scen-worker-pool"
    template = slice_.outputs["apps"]["worker_pool"]["machine_template"]
    connection = FlyConnection.resolve(token=slice_.flysim.token, api_base_url=slice_.flysim.url,
                                       flaps_base_url=slice_.flysim.url, environ={})
    with FlyClient(connection) as fly:
        orphan = fly.create_machine(pool, {**template, "metadata": {**template.get("metadata", {}),
                                                                     "artifact_e2e_run": "killed-run"}}, region="syd")
        other = fly.create_machine(pool, template, region="syd")  # not an e2e run's: fly-exec's, say
        try:
            status, output, evidence = e2e(
                slice_, tmp_path, "--scenario", "WORKER-020", "--variant", "happy",
                strategy=("--strategy", "fixture-pool", "--manifest", str(manifest)),
                env={"FLY_ORG_TOKEN": slice_.token})
            assert status == 0, output
            left = {m.id for m in fly.list_machines(pool) if m.state != "destroyed"}
            assert orphan.id not in left and other.id in left
            assert f"swept worker machines of {pool}: {orphan.id}" in output
            assert slice_.token not in "".join(p.read_text(errors="replace") for p in evidence.rglob("*") if p.is_file())
        finally:
            fly.delete_machine(pool, other.id, force=True)
            fly.wait_machine(pool, other.id, "destroyed", timeout=30)
