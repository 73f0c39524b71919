"""Something changed outside Pulumi, then `refresh` and `up` (issue 9, item 4).

Changes are made as an operator would make them, straight through the Fly API (flyctl does no more):
a machine stopped, a secret deleted, a machine destroyed, an IP released. The phase 6 validation
(`python -m ops validate`) must fail on a slice that isn't running; `refresh` must find each change,
the preview after it must show the repair, and `up` must make it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flysim.testing import FlysimServer

from .harness import REPO, SliceStack, make_stack
from .userpaths import mutating_calls, preview, state_resources, view

pytestmark = pytest.mark.e2e

CLERK_SECRET = "sk_sim_drift_1a2b3c4d5e6f"


def _validate(s: SliceStack) -> subprocess.CompletedProcess[str]:
    """`python -m ops validate --stack <stack>`, as the runbook's phase 6 runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "FLY_"))}
    env.update(s.stack.workspace.env_vars)
    return subprocess.run([sys.executable, "-m", "ops", "validate", "--stack", s.stack.name, "--work-dir",
                           str(s.work_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_drift_is_found_by_refresh_and_repaired_by_up(pulumi_bin: Path, tmp_path: Path) -> None:
    with FlysimServer(orgs=["personal"]) as flysim:
        s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                       secret_config={"artifact-slice:clerkSecretKey": CLERK_SECRET,
                                      "artifact-slice:clerkPublishableKey": "pk_sim_drift_0a9b8c"})
        prefix = s.stack.name
        router_app, exec_app, nfs_app = f"{prefix}-fly-router", f"{prefix}-fly-exec", f"{prefix}-nfs"
        assert s.up().summary.result == "succeeded"  # with the phase 6 validation as its last step
        fly = flysim.client()

        # Round 1: the router machine stopped, a Clerk secret deleted.
        [router] = view(flysim, prefix).machines("fly-router")
        assert fly.post(f"/v1/apps/{router_app}/machines/{router['id']}/stop").status_code == 200
        assert fly.get(f"/v1/apps/{router_app}/machines/{router['id']}/wait",
                       params={"state": "stopped", "timeout": 30}).status_code == 200
        assert fly.delete(f"/v1/apps/{router_app}/secrets/CLERK_SECRET_KEY").status_code in (200, 204)

        # Checked at the end, so that one run shows the rest too.
        failed = _validate(s)
        report = failed.stdout + failed.stderr
        validation_saw_it = failed.returncode == 1 and any(
            line.startswith("FAIL") and (router["id"] in line or router_app in line) for line in report.splitlines())

        s.refresh()
        flysim.clear_calls()
        plan = preview(s)
        assert plan.steps.get("router-machine") == "update", f"the preview after refresh: {plan.changes()}"
        assert plan.steps.get("router-secrets") == "update", f"the preview after refresh: {plan.changes()}"
        assert flysim.calls() == []

        assert s.up().summary.result == "succeeded"
        sim = view(flysim, prefix)
        assert [(m["id"], m["state"]) for m in sim.machines("fly-router")] == [(router["id"], "started")]
        assert set(sim.app("fly-router")["secrets"]["names"]) == {"CLERK_SECRET_KEY", "CLERK_PUBLISHABLE_KEY"}
        repaired = _validate(s)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr  # `up` ran it too

        # Round 2: the exec machine destroyed, the NFS app's Flycast address released.
        [exec_machine] = sim.machines("fly-exec")
        [flycast] = [ip["ip"] for ip in sim.app("nfs")["ip_assignments"] if ip["ip"].startswith("fdaa:")]
        assert fly.delete(f"/v1/apps/{exec_app}/machines/{exec_machine['id']}",
                          params={"force": "true"}).status_code == 200
        assert fly.delete(f"/v1/apps/{nfs_app}/ip_assignments/{flycast}").status_code in (200, 204)

        s.refresh()
        plan = preview(s)
        assert plan.steps.get("exec-machine") == "create", f"the preview after refresh: {plan.changes()}"
        assert plan.steps.get("nfs-flycast") == "create", f"the preview after refresh: {plan.changes()}"

        flysim.clear_calls()
        assert s.up().summary.result == "succeeded"
        sim = view(flysim, prefix)
        state = state_resources(s)
        assert [m["id"] for m in sim.machines("fly-exec")] == [state["exec-machine"]["outputs"]["machine_id"]]
        assert sim.machines("fly-exec")[0]["state"] == "started"
        assert [ip["ip"] for ip in sim.app("nfs")["ip_assignments"] if ip["ip"].startswith("fdaa:")] == \
            [state["nfs-flycast"]["outputs"]["address"]]
        assert not [c for c in mutating_calls(flysim) if "fly-router" in c], mutating_calls(flysim)

        # Converged: a no-change preview makes no call.
        flysim.clear_calls()
        assert preview(s).changes() == {}
        assert flysim.calls() == []
        fly.close()
    assert validation_saw_it, f"phase 6 validation of a slice whose router is stopped:\n{report}"
