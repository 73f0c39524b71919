"""Phase 6 as the last step of `pulumi up`: the control plane's own checks (controlplane.validate), run
in the provider process with the slice's org token, on the real engine against flysim."""

from __future__ import annotations

from pathlib import Path

import pytest
from pulumi import automation as auto

from fly import FlyClient, FlyConnection

from .harness import make_stack
from .userpaths import state_file_text

pytestmark = pytest.mark.e2e


def _fly(flysim) -> FlyClient:
    return FlyClient(FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                           environ={}))


def _failed_up(s, config_key: str, value: str) -> str:
    """Change one setting (so the manifest changes and phase 6 runs again) and return what the failed
    `up` told the user."""
    s.stack.set_config(config_key, auto.ConfigValue(value))
    with pytest.raises(auto.errors.CommandError) as failed:
        s.up()
    return str(failed.value)


def test_phase6_passes_on_a_good_slice_and_fails_naming_the_check(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token)
    prefix = s.stack.name
    flysim.clear_calls()
    assert s.up().summary.result == "succeeded"
    # It ran: it read the worker pool and the serving apps, and its synthetic customer was a dry run.
    calls = flysim.calls()
    assert any(c["operation"] == "Machines_list" and c["path"].endswith(f"/{prefix}-worker-pool/machines")
               for c in calls)
    assert any(c["operation"] == "Apps_show" and c["path"].endswith(f"/{prefix}-cust-phase6-synthetic")
               for c in calls)
    assert not any(c["mutating"] and "-cust-" in c["path"] for c in calls)
    assert [a["name"] for a in flysim.state()["apps"] if "-cust-" in a["name"]] == []
    outputs = {k: v.value for k, v in s.stack.outputs().items()}
    # Phase 6 keeps the slice's token to check again on refresh: a secret, never plain text in the state.
    assert outputs["controlPlaneToken"] not in state_file_text(s)
    router_app, exec_app = outputs["apps"]["router"]["name"], outputs["apps"]["exec"]["name"]
    [router_machine] = [m["id"] for m in outputs["apps"]["router"]["machines"]]
    pool = outputs["apps"]["worker_pool"]

    # A no-change up runs nothing again (no call at all).
    flysim.clear_calls()
    assert set(s.up().summary.resource_changes or {}) == {"same"}
    assert flysim.calls() == []

    # Worker machines (made by fly-exec, outside Pulumi), and nothing of the stack changed: `up --refresh`
    # checks again and fails naming the check.
    with _fly(flysim) as fly:
        workers = [fly.create_machine(pool["name"], pool["machine_template"], region="syd") for _ in range(2)]
    with pytest.raises(auto.errors.CommandError) as failed:
        s.up(refresh=True)
    text = str(failed.value)
    assert f"FAIL worker pool {prefix}-worker-pool has no machines: 2 found" in text
    assert "Traceback" not in text and flysim.token not in text
    with _fly(flysim) as fly:
        for worker in workers:
            fly.delete_machine(pool["name"], worker.id, force=True)

    # A stopped router: the slice is not running.
    with _fly(flysim) as fly:
        fly.stop_machine(router_app, router_machine)
        fly.wait_machine(router_app, router_machine, "stopped")
    text = _failed_up(s, "artifact-slice:execImage", "registry.fly.io/artifact-fly-exec:2026.11.3")
    assert f"FAIL router app {router_app} is running: machine(s) {router_machine} stopped" in text
    assert "worker pool" not in text.split("FAIL", 1)[1].split("\n")[0]
    with _fly(flysim) as fly:
        fly.start_machine(router_app, router_machine)
        fly.wait_machine(router_app, router_machine, "started")
    assert exec_app

    # A baseline app gone (deleted outside Pulumi).
    with _fly(flysim) as fly:
        fly.delete_app(f"{prefix}-fly-host-coder")
    text = _failed_up(s, "artifact-slice:execImage", "registry.fly.io/artifact-fly-exec:2026.11.4")
    assert f"FAIL app {prefix}-fly-host-coder (image_coder) exists: app {prefix}-fly-host-coder not found" in text

    s.destroy()
    s.remove()
