"""Several slices at once in one org, as CI's ephemeral cycles make them: 4 slices brought up concurrently
on one flysim with Fly's rate limits on and `realistic` latency all converge, and all are torn down with
nothing left (issue 11's acceptance). Timings belong to the benchmark (`scripts/bench --only scale`)."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
from pulumi import automation as auto

from flysim.testing import FlysimServer

from .harness import SliceStack, make_stack

pytestmark = pytest.mark.e2e

SLICES = 4
ROLES = ("nfs", "fly-router", "fly-exec", "worker-pool", "fly-host-basic", "fly-host-coder")


def _run_all(stacks: list[SliceStack], operation: str) -> dict[str, str]:
    """Run ``operation`` on every stack at once; the stacks that failed, with the end of their error."""
    def run(s: SliceStack) -> str | None:
        try:
            getattr(s, operation)()
            return None
        except auto.CommandError as exc:
            errors = [line.strip() for line in str(exc).splitlines()
                      if "error:" in line and "update failed" not in line]
            return "\n".join(dict.fromkeys(errors)) or str(exc)[-1500:]

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(stacks)) as pool:
        results = list(pool.map(run, stacks))
    return {s.stack.name: error for s, error in zip(stacks, results) if error is not None}


def test_four_slices_at_once_under_rate_limits_converge_and_leave_nothing(tmp_path: Path, pulumi_bin: Path) -> None:
    with FlysimServer(orgs=["personal"], latency="realistic", rate_limit=True) as flysim:
        assert flysim.sim is not None and flysim.sim.ratelimiter.enabled
        stacks = [make_stack(tmp_path / f"s{i}", pulumi_bin, flysim.url, flysim.token, stack_name=f"scale-{i}")
                  for i in range(SLICES)]

        failed = _run_all(stacks, "up")
        assert failed == {}, "\n\n".join(f"{name}:\n{error}" for name, error in failed.items())
        state = flysim.state()
        apps = {a["name"]: a for a in state["apps"]}
        for s in stacks:
            prefix = s.stack.name
            assert {f"{prefix}-{role}" for role in ROLES} <= set(apps), prefix
            for role in ("nfs", "fly-router", "fly-exec"):
                live = [m["state"] for m in apps[f"{prefix}-{role}"]["machines"] if m["state"] != "destroyed"]
                assert live == ["started"], (prefix, role, live)
            assert [v["name"] for v in apps[f"{prefix}-nfs"]["volumes"]] == ["nfsdata"]
            outputs = s.outputs()
            assert set(outputs["apps"]) == {"nfs", "router", "exec", "worker_pool", "image_basic", "image_coder"}

        failed = _run_all(stacks, "destroy")
        assert failed == {}, "\n\n".join(f"{name}:\n{error}" for name, error in failed.items())
        state = flysim.state()
        left = [a["name"] for a in state["apps"] if a["name"].startswith("scale-")]
        assert left == [], f"apps left after destroy: {left}"
        live_tokens = [t for t in state.get("tokens", []) if str(t.get("name", "")).startswith("scale-")
                       and not t.get("revoked")]
        assert live_tokens == []
        for s in stacks:
            s.remove()
