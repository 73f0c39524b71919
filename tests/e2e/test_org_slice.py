"""The whole org slice, end to end: a real `pulumi up`, `preview`, `refresh` and `destroy` through the
Automation API against flysim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi import automation as auto

from fly import FlyClient, FlyConnection

from .harness import SliceStack, make_stack

pytestmark = pytest.mark.e2e

CLERK_SECRET = "sk_sim_9f8e7d6c5b4a39281706"
APP_ROLES = {"nfs", "router", "exec", "worker_pool", "image_basic", "image_coder"}


def _apps(state: dict, prefix: str) -> dict[str, dict]:
    return {a["name"]: a for a in state["apps"] if a["name"].startswith(prefix + "-")}


def _live(machines: list[dict]) -> list[dict]:
    return [m for m in machines if m["state"] != "destroyed"]


def _fly(flysim) -> FlyClient:
    return FlyClient(FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                           environ={}))


def _state_file(s: SliceStack, tmp_path: Path) -> str:
    files = list((tmp_path / "backend").rglob(f"{s.stack.name}.json"))
    assert files, "no state file in the backend"
    return files[0].read_text()


def _ops(s: SliceStack, argv: list[str]) -> int:
    """Run `python -m ops ...` in-process with the stack's environment (backend, passphrase, PATH)."""
    import os

    from ops.__main__ import main

    saved = dict(os.environ)
    os.environ.update(s.stack.workspace.env_vars)
    try:
        return main(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _mutations(flysim) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in flysim.calls() if c["mutating"]]


def test_full_slice_lifecycle(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   secret_config={"artifact-slice:clerkSecretKey": CLERK_SECRET,
                                  "artifact-slice:clerkPublishableKey": "pk_sim_0123456789"})
    prefix = s.stack.name
    assert s.up().summary.result == "succeeded"

    # The slice as Fly sees it.
    apps = _apps(flysim.state(), prefix)
    assert set(apps) == {f"{prefix}-{n}" for n in ("nfs", "fly-router", "fly-exec", "worker-pool", "fly-host-basic",
                                                   "fly-host-coder")}
    for name in (f"{prefix}-nfs", f"{prefix}-fly-router", f"{prefix}-fly-exec"):
        assert [m["state"] for m in _live(apps[name]["machines"])] == ["started"], name
    assert _live(apps[f"{prefix}-worker-pool"]["machines"]) == []
    assert [v["name"] for v in apps[f"{prefix}-nfs"]["volumes"]] == ["nfsdata"]

    # The handover manifest: every field the control plane needs, no secret value.
    out = s.outputs()
    assert out["org"]["slug"] == "personal" and out["org"]["id"]
    assert out["token"]["id"] and out["token"]["name"] == f"{prefix}-control-plane" and out["token"]["expires_at"]
    assert "token" not in out["token"]
    assert set(out["apps"]) == APP_ROLES
    for role, app in out["apps"].items():
        assert app["id"] and app["region"] == "syd" and app["flycast"].startswith("fdaa:"), role
        # The worker pool runs nothing: its image is in the template, its digest known once fly-exec runs it.
        assert app["image_digest"].startswith("sha256:") or role == "worker_pool", role
    for role in ("nfs", "router", "exec"):
        [machine] = out["apps"][role]["machines"]
        assert machine["id"] and machine["state"] == "started" and machine["updated_at"]
    assert out["apps"]["nfs"]["volumes"][0]["id"].startswith("vol_") and out["apps"]["nfs"]["volumes"][0]["zone"]
    assert out["apps"]["worker_pool"]["machines"] == []
    template = out["apps"]["worker_pool"]["machine_template"]
    assert template["services"][0]["autostop"] == "suspend"
    router_env = next(m for m in apps[f"{prefix}-fly-router"]["machines"] if m["state"] == "started")
    assert out["apps"]["image_basic"]["image_manifest"]["name"] == "basic"

    # NFS holds both image manifests.
    nfs_machine = out["apps"]["nfs"]["machines"][0]["id"]
    with _fly(flysim) as fly:
        for name in ("basic", "coder"):
            result = fly.exec_machine(f"{prefix}-nfs", nfs_machine, ["cat", f"/data/computers/images/{name}.json"])
            assert result.exit_code == 0 and json.loads(result.stdout)["name"] == name
        router = fly.get_machine(f"{prefix}-fly-router", out["apps"]["router"]["machines"][0]["id"])
        assert router.config["env"]["DC_NFS"] == f"{prefix}-nfs"
        assert router.config["env"]["DC_WORKER_POOL_APP"] == f"{prefix}-worker-pool"
        assert router.config["env"]["DC_EXEC"] == f"{prefix}-fly-exec"
        assert router.config["metadata"]["fly_process_group"] == "app"
        assert set(fly.list_secret_names(f"{prefix}-fly-router")) == {"CLERK_SECRET_KEY", "CLERK_PUBLISHABLE_KEY"}
    assert router_env["state"] == "started"

    # Secrets stay secrets: not in plaintext in the state, not in outputs.
    token_value = s.stack.outputs()["controlPlaneToken"]
    assert token_value.secret and token_value.value
    state_text = _state_file(s, tmp_path)
    assert CLERK_SECRET not in state_text and token_value.value not in state_text
    assert flysim.token not in state_text

    # A no-change preview and up make no mutating call.
    flysim.clear_calls()
    preview = s.preview()
    assert set(preview.change_summary) == {"same"}, [
        line for line in preview.stdout.splitlines() if line.lstrip().startswith(("~", "+", "-"))][:40]
    assert _mutations(flysim) == []
    up_again = s.up()
    assert set(up_again.summary.resource_changes or {}) == {"same"}, [
        line for line in up_again.stdout.splitlines() if "updat" in line or "diff" in line]
    assert _mutations(flysim) == []

    # Refresh reads, and finds nothing drifted.
    s.refresh()
    assert _mutations(flysim) == []

    # Changing an image reference updates that machine in place: same machine, new image.
    router_id = out["apps"]["router"]["machines"][0]["id"]
    s.stack.set_config("artifact-slice:routerImage", auto.ConfigValue("registry.fly.io/artifact-fly-router:2026.11.2"))
    flysim.clear_calls()
    assert s.up().summary.result == "succeeded"
    out2 = s.outputs()
    assert out2["apps"]["router"]["machines"][0]["id"] == router_id
    assert out2["apps"]["router"]["image"] == "registry.fly.io/artifact-fly-router:2026.11.2"
    assert out2["apps"]["router"]["image_digest"] != out["apps"]["router"]["image_digest"]
    assert not any(c["operation"] in ("Machines_create", "Machines_delete") and "fly-router" in c["path"]
                   for c in flysim.calls())
    assert out2["apps"]["exec"]["machines"] == out["apps"]["exec"]["machines"]

    # Phase 6 and 7 commands on the live slice.
    assert _ops(s, ["validate", "--stack", prefix, "--work-dir", str(s.work_dir)]) == 0
    handover_dir = tmp_path / "handover"
    assert _ops(s, ["handover", "--stack", prefix, "--work-dir", str(s.work_dir), "--out", str(handover_dir)]) == 0
    [handover] = list(handover_dir.glob(f"{prefix}-*.json"))
    document = json.loads(handover.read_text())
    assert set(document["live"]) == APP_ROLES and document["live"]["nfs"]["machines"][0]["events"]
    # Log snapshots read through the logs API: router and exec booted, the NFS self-mount check passed.
    for role in ("router", "exec"):
        assert any(" INFO Starting init" in line for line in document["live"][role]["logs"]), role
    assert any(line.endswith("] self-mount ok") for line in document["live"]["nfs"]["logs"])
    assert "controlPlaneToken" not in document["manifest"] and token_value.value not in handover.read_text()

    # Worker machines made outside Pulumi (by fly-exec): phase 6 validation, run by `up`, now fails the
    # update, and teardown sweeps them.
    with _fly(flysim) as fly:
        fly.create_machine(f"{prefix}-worker-pool", template, name="worker-1", region="syd")
        fly.create_machine(f"{prefix}-worker-pool", template, name="worker-2", region="syd")
    s.stack.set_config("artifact-slice:execImage", auto.ConfigValue("registry.fly.io/artifact-fly-exec:2026.11.2"))
    with pytest.raises(auto.errors.CommandError) as failed:
        s.up()
    assert f"FAIL worker pool {prefix}-worker-pool has no machines" in str(failed.value)

    s.destroy()
    assert _apps(flysim.state(), prefix) == {}
    assert [t for t in flysim.state().get("tokens", []) if t.get("name") == f"{prefix}-control-plane"
            and not t.get("revoked")] == []
    s.remove()


def test_failing_nfs_gate_blocks_router_and_exec(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   config={"artifact-slice:nfsImage": "registry.fly.io/artifact-fly-nfs:broken",
                           "artifact-slice:nfsGateTimeoutSeconds": "5"})
    prefix = s.stack.name
    with pytest.raises(auto.errors.CommandError) as exc:
        s.up()
    message = str(exc.value)
    assert "health gate 'self-mount' failed" in message and "access denied" in message
    apps = _apps(flysim.state(), prefix)
    assert _live(apps.get(f"{prefix}-fly-router", {}).get("machines", [])) == []
    assert _live(apps.get(f"{prefix}-fly-exec", {}).get("machines", [])) == []
    s.destroy()
    assert _apps(flysim.state(), prefix) == {}


def test_two_slices_coexist_in_one_org(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    long_lived = make_stack(tmp_path / "a", pulumi_bin, flysim.url, flysim.token, stack_name="org1",
                            config={"artifact-slice:domain": "org1.artifact.test"})
    ephemeral = make_stack(tmp_path / "b", pulumi_bin, flysim.url, flysim.token, stack_name="org1-e2e-4242")
    assert long_lived.up().summary.result == "succeeded"
    before = {a["name"]: a for a in flysim.state()["apps"]}
    assert ephemeral.up().summary.result == "succeeded"
    ephemeral.destroy()
    after = {a["name"]: a for a in flysim.state()["apps"]}
    assert set(after) == set(before) and all(n.startswith("org1-") and "e2e" not in n for n in after)
    for name, app in before.items():  # untouched: same machines in the same versions
        assert [(m["id"], m.get("instance_id")) for m in _live(app["machines"])] == \
            [(m["id"], m.get("instance_id")) for m in _live(after[name]["machines"])]
    long_lived.destroy()
    assert flysim.state()["apps"] == []


def test_bad_config_fails_the_preview_before_any_api_call(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   config={"artifact-slice:primaryRegion": "Sydney", "artifact-slice:nfsVolumeSizeGb": "lots"})
    flysim.clear_calls()
    with pytest.raises(auto.errors.CommandError) as exc:
        s.preview()
    message = str(exc.value)
    assert "artifact-slice:primaryRegion (got 'Sydney')" in message
    assert "artifact-slice:nfsVolumeSizeGb (got 'lots')" in message and "integer" in message
    assert flysim.calls() == []


def test_malformed_image_manifest_fails_naming_the_file(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   config={"artifact-slice:coderImage": "registry.fly.io/artifact-host-coder:bad-manifest"})
    with pytest.raises(auto.errors.CommandError) as exc:
        s.up()
    message = str(exc.value)
    assert "/data/computers/images/coder.json" in message and "is malformed" in message and "'image'" in message

    s.stack.set_config("artifact-slice:coderImage", auto.ConfigValue("registry.fly.io/artifact-host-coder:2026.11.1"))
    s.stack.set_config("artifact-slice:basicImage",
                       auto.ConfigValue("registry.fly.io/artifact-host-basic:broken-release"))
    with pytest.raises(auto.errors.CommandError) as exc:
        s.up()
    assert f"release command of app {s.stack.name}-fly-host-basic failed with exit code 3" in str(exc.value)
    s.destroy()
    assert _apps(flysim.state(), s.stack.name) == {}
