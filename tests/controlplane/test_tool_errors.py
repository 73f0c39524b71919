"""Bad input and refused calls, through the SDK's client connected to the server in-process: each is an
MCP tool error (isError) saying what failed and the fix, made before any mutating call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from controlplane.guard import AuditLog, redact
from controlplane.infra import Infra, connection_for
from controlplane.manifest import Slice
from controlplane.server import build_server
from controlplane_helpers import SliceWorld




def _call(world: SliceWorld, tmp_path: Path, tool: str, args: dict[str, Any], *, token: str | None = None,
          manifest: dict[str, Any] | None = None, allow_writes: bool = True, sdk_refused: bool = False) -> str:
    slice_ = Slice.from_outputs(manifest or world.manifest, source="test").check("test")
    token = token or world.token
    with Infra(slice_, connection_for(slice_, token), allow_writes=allow_writes) as infra:
        server = build_server(infra, audit=AuditLog(tmp_path / "audit.jsonl", (token,)), secrets=(token,))

        async def call() -> Any:
            async with Client(server) as client:
                return await client.call_tool(tool, args)
        result = anyio.run(call)
    assert result.is_error, result
    text = result.content[0].text
    assert "Traceback" not in text and token not in text
    # Ours say the fix; the SDK's own schema check (sdk_refused) names the field instead.
    assert ("validation error" in text) if sdk_refused else ("Fix:" in text)
    return text


@pytest.mark.parametrize(("args", "expected"), [
    ({"region": "xyz"}, "region: 'xyz' is not a Fly region"),
    ({"cpus": 3}, "cpus=3 is not a shared size"),
    ({"memory_mb": 100}, "memory_mb=100 does not fit 1 shared CPU(s): use a multiple of 256 from 256 to 2048"),
    ({"cpu_kind": "performance", "memory_mb": 1024}, "does not fit 1 performance CPU(s)"),
    ({"env": {"1BAD": "x"}}, "'1BAD': not a valid environment variable name"),
    ({"volume_size_gb": -1}, "volume_size_gb"),
])
def test_invalid_input_is_refused_before_any_call(world: SliceWorld, tmp_path: Path, args: dict, expected: str) -> None:
    world.flysim.clear_calls()
    text = _call(world, tmp_path, "infra_ensure_app", {"customer": "acme", **args})
    assert expected in text and "invalid input" in text
    assert world.flysim.calls() == []


def test_bad_customer_name(world: SliceWorld, tmp_path: Path) -> None:
    text = _call(world, tmp_path, "infra_ensure_app", {"customer": "Acme_Corp", "dry_run": True})
    assert "customer: must be lowercase letters, digits and dashes" in text


def test_name_taken_by_another_org(world: SliceWorld, tmp_path: Path) -> None:
    with world.admin() as fly:
        fly.create_app("s1-cust-taken", "other-org")
    world.flysim.clear_calls()
    try:
        text = _call(world, tmp_path, "infra_ensure_app", {"customer": "taken"})
        assert world.mutations() == []
    finally:
        world.admin().delete_app("s1-cust-taken")
    assert "app name s1-cust-taken is taken by another organization" in text and "choose another customer name" in text


def test_app_of_another_org_refused_even_with_a_broader_token(world: SliceWorld, tmp_path: Path) -> None:
    """With a token that can see other orgs, the allowlist's org check still refuses their apps."""
    with world.admin() as fly:
        fly.create_app("s1-cust-elsewhere", "other-org")
    try:
        text = _call(world, tmp_path, "infra_list_machines", {"app": "s1-cust-elsewhere"}, token=world.flysim.token)
    finally:
        world.admin().delete_app("s1-cust-elsewhere")
    assert "is in org other-org, outside this control plane's allowlist (org personal)" in text


def test_unknown_org(world: SliceWorld, tmp_path: Path) -> None:
    manifest = {**world.manifest, "org": {"slug": "no-such-org"}}
    text = _call(world, tmp_path, "infra_ensure_app", {"customer": "acme", "dry_run": True}, manifest=manifest,
                 token=world.flysim.token)
    assert "Fly does not know org 'no-such-org'" in text


def test_token_of_another_org(world: SliceWorld, tmp_path: Path) -> None:
    manifest = {**world.manifest, "org": {"slug": "other-org"}}
    text = _call(world, tmp_path, "infra_ensure_app", {"customer": "acme", "dry_run": True}, manifest=manifest)
    assert "Fly rejected the org token (FLY_ORG_TOKEN) for org other-org" in text


def test_missing_customer_app(world: SliceWorld, tmp_path: Path) -> None:
    text = _call(world, tmp_path, "infra_list_machines", {"app": "s1-cust-nobody"})
    assert "app s1-cust-nobody does not exist in org personal" in text


def test_stopped_nfs_fails_the_dry_run(world: SliceWorld, tmp_path: Path) -> None:
    nfs = world.manifest["apps"]["nfs"]
    with world.admin() as fly:
        fly.stop_machine(nfs["name"], nfs["machines"][0]["id"])
        fly.wait_machine(nfs["name"], nfs["machines"][0]["id"], "stopped")
    try:
        text = _call(world, tmp_path, "infra_ensure_app", {"customer": "acme", "dry_run": True})
    finally:
        with world.admin() as fly:
            fly.start_machine(nfs["name"], nfs["machines"][0]["id"])
            fly.wait_machine(nfs["name"], nfs["machines"][0]["id"], "started")
    assert "NFS app s1-nfs has no started machine" in text


def test_provision_refuses_a_stack_outside_the_allowlist(world: SliceWorld, tmp_path: Path) -> None:
    slice_ = Slice.from_outputs(world.manifest, source="test").check("test")
    from controlplane.provision import Provisioner

    with Infra(slice_, connection_for(slice_, world.token), allow_writes=True) as infra:
        server = build_server(infra, audit=AuditLog(None), provisioner=Provisioner(allowed_stacks={"s1"},
                                                                                 work_dir=tmp_path))

        async def call() -> Any:
            async with Client(server) as client:
                return [await client.call_tool("infra_provision_org", {"stack": "prod"}),
                        await client.call_tool("infra_provision_org", {"stack": "s1", "apply": True, "plan_id": "x"})]
        outside, unknown_plan = anyio.run(call)
    assert outside.is_error and "stack 'prod' is outside this control plane's allowlist (s1)" in outside.content[0].text
    assert unknown_plan.is_error and "is not a preview of stack s1 made by this server" in unknown_plan.content[0].text


def test_redact_hides_secret_arguments_and_known_values() -> None:
    token = "a-known-secret-of-no-known-shape-0123"
    assert redact({"customer": "a", "secrets": {"K": "v"}, "env": {"X": f"has {token}", "TIER": "gold",
                                                                   "KEY": "sk_live_" "0123456789abcdef"}},
                  (token,)) == {
        "customer": "a", "secrets": {"K": "[redacted]"},
        "env": {"X": "has [redacted]", "TIER": "gold", "KEY": "[redacted]"}}


def _ok(world: SliceWorld, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    slice_ = Slice.from_outputs(world.manifest, source="test").check("test")
    with Infra(slice_, connection_for(slice_, world.token), allow_writes=True) as infra:
        server = build_server(infra, audit=AuditLog(None))

        async def call() -> Any:
            async with Client(server) as client:
                return await client.call_tool(tool, args)
        result = anyio.run(call)
    assert not result.is_error, result.content[0].text
    return result.structured_content


def test_secrets_converge_to_what_is_asked(world: SliceWorld) -> None:
    """A secret no longer asked for is unset, a changed value rolls the machine; then nothing to do."""
    try:
        _ok(world, "infra_ensure_app", {"customer": "sec", "secrets": {"OLD": "value-1"}, "volume_size_gb": 0})
        changed = _ok(world, "infra_ensure_app", {"customer": "sec", "secrets": {"NEW": "value-2"},
                                                  "volume_size_gb": 0})
        [secrets_step] = [s for s in changed["steps"] if s["step"] == "secrets"]
        assert secrets_step["action"] == "set" and secrets_step["unset"] == ["OLD"]
        with world.admin() as fly:
            assert set(fly.list_secret_names("s1-cust-sec")) == {"NEW"}
        rotated = _ok(world, "infra_ensure_app", {"customer": "sec", "secrets": {"NEW": "value-3"},
                                                  "volume_size_gb": 0})
        assert [s["action"] for s in rotated["steps"] if s["step"] in ("secrets", "machine")] == ["set", "update"]
        world.flysim.clear_calls()
        same = _ok(world, "infra_ensure_app", {"customer": "sec", "secrets": {"NEW": "value-3"}, "volume_size_gb": 0})
        assert same["changes"] == 0 and world.mutations() == []
    finally:
        _ok(world, "infra_destroy_app", {"customer": "sec"})
    assert world.admin().find_app("s1-cust-sec") is None


def test_rerun_after_a_failed_step_adopts_what_exists(world: SliceWorld, tmp_path: Path) -> None:
    """The machine create is refused: the call fails saying so, having made the app and its volume; the
    rerun adopts both and only creates the machine."""
    world.flysim.add_fault(operation="Machines_create", kind="status", status=400, count=1)
    try:
        text = _call(world, tmp_path, "infra_ensure_app", {"customer": "rerun"})
        assert "create the machine of s1-cust-rerun" in text
        world.flysim.clear_calls()
        made = _ok(world, "infra_ensure_app", {"customer": "rerun"})
        assert [s["action"] for s in made["steps"]] == ["exists", "unchanged", "exists", "create", "wait"]
        assert [c["operation"] for c in world.flysim.calls() if c["mutating"]] == ["Machines_create"]
    finally:
        world.flysim.clear_faults()
        _ok(world, "infra_destroy_app", {"customer": "rerun"})


def test_calls_the_sdk_refuses_are_audited_without_values(world: SliceWorld, tmp_path: Path) -> None:
    secret = "sk_live_wrongly_typed_0123456789"
    _call(world, tmp_path, "infra_ensure_app", {"customer": "acme", "secrets": {"KEY": [secret]}}, sdk_refused=True)
    audit = (tmp_path / "audit.jsonl").read_text()
    started, entry = [json.loads(line) for line in audit.splitlines()]
    assert started["outcome"] == "started" and started["call"] == entry["call"]
    assert entry["tool"] == "infra_ensure_app" and entry["outcome"] == "error"
    assert entry["args"]["secrets"] == {"KEY": "[redacted]"} and "secrets" in entry["detail"]
    assert secret not in audit


def test_applying_a_plan_needs_writes(world: SliceWorld, tmp_path: Path) -> None:
    text = _call(world, tmp_path, "infra_provision_org", {"stack": "s1", "apply": True, "plan_id": "0123"},
                 allow_writes=False)
    assert "infra_provision_org would change the slice, and writes are not allowed" in text
