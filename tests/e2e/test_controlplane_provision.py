"""`infra_provision_org` on the real engine: the control plane (`python -m controlplane serve --stack`, its
manifest read from the stack) previews the slice, returns a plan id, refuses to apply a plan that
changed since, and applies the one it previewed. Driven by the `mcp` SDK's client over stdio."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from pulumi import automation as auto

import enginejob
import enginejob.procs
from fly.pricing import PriceTable

from .harness import REPO, make_stack

pytestmark = pytest.mark.e2e

ROUTER_IMAGE = "registry.fly.io/artifact-fly-router:2026.11.2"
TABLE = PriceTable.load()  # fly/pricing.json
PRICES = TABLE.prices
VOLUME_GB, CERTIFICATE = PRICES["volume_gb_month"].usd, PRICES["certificate_hostname_month"].usd  # dollars a month


def money(usd: Decimal) -> str:
    return str(usd.quantize(Decimal("0.01")))


def _ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content or json.loads(result.content[0].text)


def test_provision_org_preview_then_apply_by_plan_id(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token)
    assert s.up().summary.result == "succeeded"
    token = s.stack.outputs()["controlPlaneToken"].value
    env = {**s.stack.workspace.env_vars, "FLY_ORG_TOKEN": token, "PYTHONPATH": str(REPO),
           "ARTIFACT_STATE_DIR": str(tmp_path / "state")}
    params = StdioServerParameters(
        command=sys.executable, cwd=str(REPO), env=env,
        args=["-m", "controlplane", "serve", "--stdio", "--stack", s.stack.name, "--work-dir", str(s.work_dir),
              "--allow-writes", "--audit-log", str(tmp_path / "audit.jsonl")])
    router = s.outputs()["apps"]["router"]

    async def scenario() -> None:
        with (tmp_path / "server.log").open("w") as log:
            async with Client(stdio_client(params, errlog=log)) as client:
                manifest = _ok(await client.call_tool("infra_manifest", {}))
                assert manifest["slice"] == s.stack.name and "controlPlaneToken" not in manifest

                # Nothing to do: a plan with no change.
                flysim.clear_calls()
                same = _ok(await client.call_tool("infra_provision_org", {"stack": s.stack.name}))
                assert same["changes"] == [] and set(same["summary"]) == {"same"} and same["plan_id"]
                assert not any(c["mutating"] for c in flysim.calls())
                # Its cost, from the same preview: the slice as it stands, unchanged. Priced: the NFS volume
                # (1 GB), the router's hostname certificate, and each machine at its region's matrix figure for its
                # size ("machine x (app): shared-cpu-1x, 512 MB, syd"); free: the shared addresses. Unknown (no
                # price in the table, never $0): the Flycast addresses alone, so the total is the known part.
                cost = same["cost"]
                assert cost["before"] == cost["after"] and cost["delta"]["usd"] == "0.00"
                machines = {r["resource"]: r["after"] for r in cost["resources"] if r["resource"].startswith("machine ")}
                assert any(router["name"] in name for name in machines), machines
                figures = {}
                for name, usd in machines.items():
                    size, memory, region = name.rsplit(": ", 1)[1].split(", ")
                    figures[name] = TABLE.machines[region][(size, int(memory.removesuffix(" MB")))].usd
                    assert usd == money(figures[name]), (name, usd)
                assert cost["after"]["usd"] == money(VOLUME_GB * 1 + CERTIFICATE + sum(figures.values()))
                assert not cost["after"]["complete"]
                assert cost["unknown"] and all(": private_v6" in u["resource"] for u in cost["unknown"]), cost["unknown"]

                # A change of config: its preview names the update, and the keys it changes, and gives a plan id.
                s.stack.set_config("artifact-slice:routerImage", auto.ConfigValue(ROUTER_IMAGE))
                plan = _ok(await client.call_tool("infra_provision_org", {"stack": s.stack.name}))
                assert plan["plan_id"] != same["plan_id"] and plan["summary"].get("update")
                assert {"op": "update", "resource": "router-machine", "type": "pulumi-python:dynamic/fly:Machine",
                        "changed": ["config"]} in plan["changes"], plan
                assert not any(c["mutating"] for c in flysim.calls())

                # The config changed since the preview: refused, naming the change; nothing applied.
                s.stack.set_config("artifact-slice:nfsVolumeSizeGb", auto.ConfigValue("7"))
                refused = await client.call_tool("infra_provision_org", {"stack": s.stack.name, "apply": True,
                                                                         "plan_id": plan["plan_id"]})
                assert refused.is_error and "changed since preview" in refused.content[0].text
                assert "config artifact-slice:nfsVolumeSizeGb changed from '1' to '7'" in refused.content[0].text
                assert not any(c["mutating"] for c in flysim.calls())

                # The code changed since the preview: refused, naming the file.
                plan = _ok(await client.call_tool("infra_provision_org", {"stack": s.stack.name}))
                changed = {c["resource"]: c["changed"] for c in plan["changes"] if c["op"] == "update"}
                assert changed["nfs-volume"] == ["size_gb"] and changed["router-machine"] == ["config"], plan
                # The volume's 1 -> 7 GB moves the estimate by exactly 6 GB at the table's price.
                grown = [r for r in plan["cost"]["resources"] if r["delta"] not in (None, "0.00")]
                assert [(r["before"], r["after"], r["delta"]) for r in grown] == [
                    (money(VOLUME_GB), money(7 * VOLUME_GB), money(6 * VOLUME_GB))], plan["cost"]
                assert plan["cost"]["delta"] == {"usd": money(6 * VOLUME_GB), "complete": False}
                (s.work_dir / "local_patch.py").write_text("PATCHED = True\n")
                try:
                    refused = await client.call_tool("infra_provision_org", {"stack": s.stack.name, "apply": True,
                                                                             "plan_id": plan["plan_id"]})
                finally:
                    (s.work_dir / "local_patch.py").unlink()
                assert refused.is_error and "code changed: local_patch.py" in refused.content[0].text
                assert not any(c["mutating"] for c in flysim.calls())

                # Preview again and apply that plan, twice at once (a client that timed out retrying while the
                # first call runs): one applies, the other hears that it is being applied.
                plan = _ok(await client.call_tool("infra_provision_org", {"stack": s.stack.name}))
                answers: list[Any] = []

                async def apply_plan() -> None:
                    answers.append(await client.call_tool("infra_provision_org", {
                        "stack": s.stack.name, "apply": True, "plan_id": plan["plan_id"]}))
                async with anyio.create_task_group() as calls:
                    calls.start_soon(apply_plan)
                    calls.start_soon(apply_plan)
                [applied] = [_ok(a) for a in answers if not a.is_error]
                [joined] = [a.content[0].text for a in answers if a.is_error]
                assert f"plan {plan['plan_id']} is being applied by an earlier call" in joined
                assert applied["result"] == "succeeded"
                # The server reads the manifest again after an applied plan.
                manifest = _ok(await client.call_tool("infra_manifest", {}))
                assert manifest["apps"]["router"]["image"] == ROUTER_IMAGE
                assert manifest["apps"]["nfs"]["volumes"][0]["size_gb"] == 7

                # A plan id is applied once: the same call again (a client that timed out, retrying) gets the
                # first call's outcome, and nothing is applied again.
                flysim.clear_calls()
                again = _ok(await client.call_tool("infra_provision_org", {"stack": s.stack.name, "apply": True,
                                                                           "plan_id": plan["plan_id"]}))
                assert again == {**applied, "repeated": True}
                assert flysim.calls() == []

                # Another caller (another server on this backend, here this test) holds the stack: said at once.
                key = f"controlplane/provision/{env['PULUMI_BACKEND_URL']}/{s.stack.name}"
                with enginejob.Runner(state_dir=tmp_path / "state").hold(key, title="a test holding the stack"):
                    busy = await client.call_tool("infra_provision_org", {"stack": s.stack.name})
                assert busy.is_error and "a test holding the stack" in busy.content[0].text, busy.content[0].text

    anyio.run(scenario)
    from fly import FlyClient, FlyConnection

    with FlyClient(FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                         environ={})) as fly:
        machine = fly.get_machine(router["name"], router["machines"][0]["id"])
        assert machine.config["image"] == ROUTER_IMAGE
    texts = (tmp_path / "audit.jsonl").read_text() + (tmp_path / "server.log").read_text()
    assert token not in texts and flysim.token not in texts

    # The server killed outright (SIGKILL) in the middle of an apply: the engine is interrupted, no process
    # of the job outlives it, and the stack is left neither locked nor unconvergeable.
    s.stack.set_config("artifact-slice:routerImage", auto.ConfigValue(ROUTER_IMAGE.replace("11.2", "11.3")))
    killed_params = StdioServerParameters(command=sys.executable, cwd=str(REPO), env=env,
                                          args=[*params.args[:-1], str(tmp_path / "audit-killed.jsonl")])

    running: dict[int, str] = {}

    async def killed_mid_apply() -> None:
        with (tmp_path / "server-killed.log").open("w") as log:
            try:
                async with Client(stdio_client(killed_params, errlog=log)) as client:
                    plan = _ok(await client.call_tool("infra_provision_org", {"stack": s.stack.name}))
                    flysim.clear_calls()
                    # The machine's wait after its update hangs a few seconds: the kill below comes while the
                    # engine runs, however late this test sees the first write under load.
                    flysim.add_fault(operation="Machines_wait", kind="hang", seconds=5, count=1)
                    async with anyio.create_task_group() as calls:
                        calls.start_soon(client.call_tool, "infra_provision_org",
                                         {"stack": s.stack.name, "apply": True, "plan_id": plan["plan_id"]})
                        with anyio.fail_after(120):
                            while not any(c["mutating"] for c in flysim.calls()):
                                await anyio.sleep(0.02)
                        running.update(enginejob.procs.marked(str(tmp_path / "state" / "jobs")))
                        os.kill(_pid_with(str(tmp_path / "audit-killed.jsonl")), signal.SIGKILL)
            except Exception:  # noqa: BLE001 - the client's connection dies with its server, as it should
                pass

    anyio.run(killed_mid_apply)
    assert len(running) >= 2, running  # the job process and the engine it runs, at least, when it was killed
    jobs = tmp_path / "state" / "jobs"
    deadline = time.monotonic() + 120
    while enginejob.procs.marked(str(jobs)) or any(not d.name.startswith(".") for d in jobs.iterdir()):
        assert time.monotonic() < deadline, f"engine job processes outlived the server: {enginejob.procs.marked(str(jobs))}"
        time.sleep(0.1)
    # Not locked (an interrupt that lands as pulumi starts or finishes kills it before it unlocks, and the job
    # then releases that lock: tests/enginejob/test_pulumi_lock.py); converges from where the run stopped.
    assert s.up().summary.result == "succeeded"
    s.destroy()
    s.remove()


def _pid_with(marker: str) -> int:
    """The pid of the process whose command line holds ``marker``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no process with {marker} in its command line")
