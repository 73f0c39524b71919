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


CREDENTIAL = "fm2_" + "a1B2c3D4e5F6g7H8i9J0kLmN"


@pytest.mark.parametrize(("args", "expected"), [
    ({"region": "xyz"}, "region: is not a Fly region"),
    ({"cpus": 3}, "cpus: 3 is not a CPU count Fly offers"),
    ({"memory_mb": 100}, "memory_mb: 100 is not a multiple of 256"),
    ({"cpu_kind": "performance", "cpus": 1, "memory_mb": 1024}, "does not fit 1 performance CPU(s)"),
    ({"env": {"1BAD": "x"}}, "env: name #1 is not a valid variable name"),
    ({"volume_size_gb": -1}, "volume_size_gb"),
    # What the slice sets on a customer machine is not the caller's to override.
    ({"env": {"ARTIFACT_CUSTOMER": "other"}}, "env: ARTIFACT_CUSTOMER is set by the slice"),
    ({"env": {"DC_NFS": "elsewhere-nfs"}}, "env: DC_NFS is set by the slice"),
    ({"env": {"PRIMARY_REGION": "iad"}}, "env: PRIMARY_REGION is set by the slice"),
    ({"env": {"TOKEN": f"FlyV1 {CREDENTIAL}"}}, "env: TOKEN holds what looks like a credential; pass it in `secrets`"),
    ({"image": "not a valid image !!"}, "image: contains a space"),
    ({"image": "ghcr.io/someone/agent:1"}, "image: its registry is not one the slice uses; use an image from "
                                           "registry.fly.io"),
    ({"customer": "acme\n"}, "customer: must be lowercase letters, digits and dashes"),
    ({"customer": "Acme_Corp"}, "customer: must be lowercase letters, digits and dashes"),
    ({"customer": "c" * 56}, "customer: 56 characters is too long: the app name s1-cust-<customer> allows 55"),
    ({"secrets": {"KEY": ["sk_live_wrongly_typed_0123456789"]}}, "secrets.KEY: is not text"),
])
def test_invalid_input_is_refused_before_any_call(world: SliceWorld, tmp_path: Path, args: dict, expected: str) -> None:
    """Refused before any call at all (not even a read), without repeating the value."""
    world.flysim.clear_calls()
    text = _call(world, tmp_path, "infra_ensure_app", {"customer": "acme", **args})
    assert expected in text and "invalid input" in text
    assert world.flysim.calls() == []
    free_text = [args.get("image"), args.get("customer"), *(args.get("env") or {}).values(),
                 *map(str, (args.get("secrets") or {}).values())]
    for value in (v for v in free_text if v and len(v.strip()) >= 6):  # long enough not to occur by chance
        assert value.strip() not in text.replace("registry.fly.io", "")


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


def test_calls_the_sdk_refuses_are_audited_without_values(world: SliceWorld, tmp_path: Path) -> None:
    secret = "sk_live_wrongly_typed_0123456789"
    text = _call(world, tmp_path, "infra_ensure_app", {"customer": "acme", "secrets": [secret]}, sdk_refused=True)
    assert "secrets" in text and secret not in text  # the caller hears the argument and the problem, not the value
    audit = (tmp_path / "audit.jsonl").read_text()
    started, entry = [json.loads(line) for line in audit.splitlines()]
    assert started["outcome"] == "started" and started["call"] == entry["call"]
    assert entry["tool"] == "infra_ensure_app" and entry["outcome"] == "error"
    assert entry["args"]["secrets"] == "[redacted]" and "secrets" in entry["detail"]
    assert secret not in audit


def test_applying_a_plan_needs_writes(world: SliceWorld, tmp_path: Path) -> None:
    text = _call(world, tmp_path, "infra_provision_org", {"stack": "s1", "apply": True, "plan_id": "0123"},
                 allow_writes=False)
    assert "infra_provision_org would change the slice, and writes are not allowed" in text


def test_customer_calls_without_the_slice_backend_say_what_to_set(world: SliceWorld, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Customer apps are stacks in the slice's backend: a server without one says so, having changed nothing."""
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    world.flysim.clear_calls()
    for args in ({"customer": "acme", "dry_run": True}, {"customer": "acme"}):
        text = _call(world, tmp_path, "infra_ensure_app", args)
        assert "PULUMI_BACKEND_URL is not set" in text and "PULUMI_CONFIG_PASSPHRASE" in text
    assert world.mutations() == []
