"""The slice's CrossGuard pack (policy/) through the real CLI, as `pulumi preview --policy-pack policy` runs it:
a change that breaks every mandatory policy fails its preview with each policy and resource named and no
mutating Fly call; the default e2e slice passes with advisory warnings only; a stack's config raises a policy's
level; `python -m ops cost` prints the default slice's estimate and writes the PR table. Three previews in all (the
engine's runs are what this costs)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pulumi import automation as auto
from pulumi.automation.events import EngineEvent

from fly.pricing import compare, estimate
from fly.stack_cost import billables, preview_inputs
from ops.cost import render_markdown, violations
from ops.cost import main as cost_main

from .harness import REPO, make_stack

CREDENTIAL = "FlyV1 fm2_" + "lJPECAAAAAAAAMqUxBA" * 2
# A pull request as a reviewer would get it: the slice as it is, plus a public address on the NFS app and a
# standing worker machine that stops instead of suspending and carries a token in its plain env.
PULL_REQUEST_PROGRAM = f'''
import runpy
import pulumi
runpy.run_path({str(REPO / "__main__.py")!r}, run_name="__main__")

from fly.providers import FlyConnectionArgs, IpAddress, Machine

fly = pulumi.Config("fly")
connection = FlyConnectionArgs(api_base_url=fly.get("apiBaseUrl"), flaps_base_url=fly.get("flapsBaseUrl"))
prefix = pulumi.get_stack()
IpAddress("nfs-public-v6", app=f"{{prefix}}-nfs", type="v6", connection=connection)
Machine("standing-worker", app=f"{{prefix}}-worker-pool", name=f"{{prefix}}-worker-0", region="syd",
        connection=connection, config={{
            "image": "registry.fly.io/artifact-worker:2026.11.1",
            "guest": {{"cpu_kind": "performance", "cpus": 1, "memory_mb": 2048}},
            "env": {{"API_TOKEN": {CREDENTIAL!r}}},
            "services": [{{"protocol": "tcp", "internal_port": 8080, "autostop": "stop"}}]}})
'''


def _violations(events: list[EngineEvent]) -> list[tuple[str, str, str, str]]:
    """(policy, enforcement level, resource type::name, message) of every policy event."""
    found = []
    for event in events:
        if (p := event.policy_event) is not None:
            type_, name = (p.resource_urn or "::").split("::")[-2:]
            resource = f"{type_.split('$')[-1]}::{name}"  # its own type, not its parents'
            found.append((p.policy_name, p.enforcement_level, resource, p.message))
    return found


def _mutating(flysim) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in flysim.calls() if c["mutating"]]


def test_a_change_breaking_each_mandatory_policy_fails_its_preview(tmp_path: Path, pulumi_bin: Path,
                                                                    flysim) -> None:
    # Not an e2e-* stack: its data volume must be protected.
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token, stack_name=f"policy-{uuid.uuid4().hex[:6]}",
                   config={"artifact-slice:tokenExpiryHours": "87600", "artifact-slice:protectVolumes": "false",
                           "artifact-policy:allowedRegions": "ams,fra"})
    program = s.work_dir / "__main__.py"
    program.unlink()
    program.write_text(PULL_REQUEST_PROGRAM)
    events: list[EngineEvent] = []
    with pytest.raises(auto.CommandError):
        s.preview(policy_packs=[str(s.work_dir / "policy")], on_event=events.append)

    mandatory = {(name, resource) for name, level, resource, _ in _violations(events) if level == "mandatory"}
    fly = "pulumi-python:dynamic/fly:"
    assert {
        ("worker-pool-suspends", f"{fly}Machine::standing-worker"),
        ("no-credentials-in-env", f"{fly}Machine::standing-worker"),
        ("no-public-address", f"{fly}IpAddress::nfs-public-v6"),
        ("token-expiry-bounded", f"{fly}OrgToken::control-plane-token"),
        ("data-volumes-protected", f"{fly}Volume::nfs-volume"),
        ("region-allowed", f"{fly}Machine::router-machine"),
        ("region-allowed", f"{fly}Volume::nfs-volume"),
    } <= mandatory, mandatory
    # What the person running the preview reads: each policy, the resource and the fix.
    printed = "\n".join(s.events)
    for name in ("worker-pool-suspends", "no-public-address", "token-expiry-bounded", "data-volumes-protected"):
        assert f"[mandatory]  {name}" in printed, printed[-3000:]
    assert "app " + s.stack.name + "-nfs gets a public v6 address" in printed
    assert not [m for *_, m in _violations(events) if CREDENTIAL in m]  # (the diff shows the input, as Pulumi does)
    # The PR comment's table, from this preview: one row per mandatory violation, the resource named.
    comment = render_markdown(compare(estimate([]), estimate(billables(preview_inputs({}, events)))),
                              violations(events), preview_failed=True)
    assert "**The preview fails: mandatory policy violations.**" in comment
    assert "| ❌ | `no-public-address` | fly:IpAddress::nfs-public-v6: app " in comment
    assert "| ❌ | `token-expiry-bounded` | fly:OrgToken::control-plane-token: token " in comment
    assert CREDENTIAL not in comment
    assert _mutating(flysim) == []


def test_the_default_slice_passes_with_advisories_and_a_stack_can_raise_a_level(tmp_path: Path, pulumi_bin: Path,
                                                                                 flysim, monkeypatch, capsys) -> None:
    # e2e-<id>: ephemeral, volume unprotected; the default volume size (the harness's is 1 GB).
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token, config={"artifact-slice:nfsVolumeSizeGb": "10"})
    pack = str(s.work_dir / "policy")

    # What a person (and the PR workflow) runs: `python -m ops cost` previews with the pack, prints the
    # estimate per resource and writes the PR comment's table.
    for key, value in {**s.stack.workspace.env_vars, "PULUMI_HOME": s.stack.workspace.pulumi_home}.items():
        monkeypatch.setenv(key, value)
    table = tmp_path / "table.md"
    assert cost_main(["--stack", s.stack.name, "--work-dir", str(s.work_dir), "--policy-pack", pack,
                      "--markdown", str(table)]) == 0
    printed = capsys.readouterr()
    # The default slice's monthly cost against a hand computation from fly/pricing.json (Fly's prices, read
    # 2026-12-04; the started-Machine matrices as rendered 2025-08-19), in syd:
    # volume 10 GB x $0.15 = $1.50; certificate for the router's hostname $0.10; the router's shared IPv4 and
    # Anycast IPv6 $0 each; machines (deploy/fly.*.toml): router shared-cpu-1x 512 MB $4.05, exec shared-cpu-2x
    # 1024 MB $8.11: $1.50 + $0.10 + $4.05 + $8.11 = $13.76 known. Unknown: the 6 Flycast (private_v6) addresses
    # (Fly's page gives no figure) and the NFS machine, whose config waits on its volume, still to be made.
    lines = printed.out.splitlines()
    assert any(f"volume nfsdata ({s.stack.name}-nfs): 10 GB" in line and line.split()[-1] == "+$1.50"
               for line in lines), printed.out
    assert any(line.startswith("certificate ") and line.split()[-1] == "+$0.10" for line in lines)
    assert sum("shared_v4" in line or ": v6 " in line for line in lines) == 2
    machines = sorted(line.split()[-1] for line in lines if line.startswith("machine "))
    assert machines == ["+$4.05", "+$8.11", "unknown"], printed.out
    assert "its size is known only after up" in printed.out
    assert sum(line.split()[-1] == "unknown" for line in lines) == 7
    assert "at least $13.76 (7 unknown)" in lines[[i for i, ln in enumerate(lines) if ln.startswith("total")][0]]
    # The table: advisories only (images by tag, off production), no mandatory row, the cost delta.
    comment = table.read_text()
    assert "| ⚠️ | `images-pinned-by-digest` | 3 resources (advisory) |" in comment and "❌" not in comment
    assert "$0.00 → at least $13.76 (7 unknown), +$13.76 a month" in comment
    # Those three: two machines and the worker pool's template, as the preview printed them.
    for resource in ("pulumi-python:dynamic/fly:Machine: router-machine",
                     "pulumi-python:dynamic/fly:Machine: exec-machine", "artifact:slice:WorkerPool: worker-pool"):
        assert f"[advisory]  images-pinned-by-digest  ({resource})" in printed.err

    # The stack's own config makes the advisory mandatory: the same preview now fails on it.
    s.stack.set_config("artifact-policy:images-pinned-by-digest", auto.ConfigValue("mandatory"))
    events: list[EngineEvent] = []
    with pytest.raises(auto.CommandError):
        s.preview(policy_packs=[pack], on_event=events.append)
    assert {name for name, level, _, _ in _violations(events) if level == "mandatory"} == {"images-pinned-by-digest"}
    assert _mutating(flysim) == []
