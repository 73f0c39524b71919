"""Customer apps through the MCP server (`python -m controlplane serve` over stdio, the SDK's client), each one a
Pulumi stack of the `CustomerApp` component in a file backend, on flysim with rate limits on. One lifecycle as a
sequence of dry-run/apply pairs (the dry run's steps are the apply's, and the apply's mutating calls in flysim's
call log are those steps), and concurrent callers on one server and on two."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters, stdio_client

from controlplane_helpers import REPO, SliceWorld
from fly.pricing import PriceTable

# The mutating calls each step makes at Fly (leases apart: they guard an update, they change nothing).
STEP_CALLS = {
    ("create", "App"): ["Apps_create"], ("create", "IpAddress"): ["App_IPAssignments_create"],
    ("create", "AppSecrets"): ["Secrets_update"], ("update", "AppSecrets"): ["Secrets_update"],
    ("create", "Volume"): ["Volumes_create"], ("update", "Volume"): ["Volumes_extend"],
    ("replace", "Volume"): ["Volume_delete", "Volumes_create"],
    ("create", "Machine"): ["Machines_create"], ("update", "Machine"): ["Machines_update"],
    ("replace", "Machine"): ["Machines_delete", "Machines_create"],
}
LEASES = {"Machines_create_lease", "Machines_release_lease"}
VOLUME_GB = PriceTable.load().prices["volume_gb_month"].usd  # dollars a GB-month, from fly/pricing.json
SYD = {size: price.usd for size, price in PriceTable.load().machines["syd"].items()}  # a started machine a month


def cost_delta(plan: dict) -> Decimal:
    return Decimal(plan["cost"]["delta"]["usd"])


def money(usd: Decimal) -> str:
    return str(usd.quantize(Decimal("0.01")))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, pulumi_bin: Path) -> dict[str, str]:
    """The slice's backend (a file backend) and the state dir the servers share (their locks)."""
    root = tmp_path_factory.mktemp("customers")
    (root / "backend").mkdir()
    return {"PULUMI_BACKEND_URL": f"file://{root / 'backend'}", "PULUMI_CONFIG_PASSPHRASE": "customer-tests",
            "ARTIFACT_STATE_DIR": str(root / "state"), "ARTIFACT_PULUMI_BIN": str(pulumi_bin),
            "PATH": f"{pulumi_bin}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", str(root))}


@pytest.fixture(scope="module")
def manifest_file(_world: SliceWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "manifest.json"
    path.write_text(json.dumps(_world.manifest))
    return path


@asynccontextmanager
async def serve(manifest_file: Path, token: str, engine: dict[str, str], log: Path) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable, cwd=str(REPO), env={"FLY_ORG_TOKEN": token, **engine},
        args=["-m", "controlplane", "serve", "--stdio", "--allow-writes", "--manifest", str(manifest_file),
              "--audit-log", str(log.with_suffix(".audit.jsonl"))])
    with log.open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            yield client


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def error(result: Any) -> str:
    assert result.is_error, result.structured_content
    return result.content[0].text


def mutating(world: SliceWorld) -> list[str]:
    calls = []
    for c in world.flysim.calls():
        if c["mutating"] and c["operation"] not in LEASES:
            calls.append(f"GraphQL:{c['graphql']}" if c["operation"] == "GraphQL" else c["operation"])
    return sorted(calls)


def expected_calls(steps: list[dict[str, Any]]) -> list[str]:
    return sorted(call for s in steps for call in STEP_CALLS[(s["op"], s["type"])])


def live(world: SliceWorld, app: str) -> tuple[list[Any], list[Any]]:
    with world.admin() as fly:
        machines = [m for m in fly.list_machines(app) if m.state != "destroyed"]
        volumes = [v for v in fly.list_volumes(app) if v.state not in ("destroyed", "destroying", "pending_destroy")]
    return machines, volumes


def test_lifecycle_dry_run_equals_apply(world: SliceWorld, manifest_file: Path, engine: dict[str, str],
                                        tmp_path: Path) -> None:
    app = "s1-cust-acme"

    async def pair(client: Client, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A dry run (no mutating call), then the apply: the same steps, and the calls those steps make."""
        world.flysim.clear_calls()
        plan = ok(await client.call_tool("infra_ensure_app", {**args, "dry_run": True}))
        assert plan["dry_run"] and mutating(world) == []
        progress: list[str] = []

        async def on_progress(_done: float, _total: float | None, message: str | None) -> None:
            progress.append(message or "")
        applied = ok(await client.call_tool("infra_ensure_app", args, progress_callback=on_progress))
        assert [(s["op"], s["resource"]) for s in applied["steps"]] == [(s["op"], s["resource"]) for s in plan["steps"]]
        assert mutating(world) == expected_calls(plan["steps"]), (mutating(world), plan["steps"])
        assert bool(plan["steps"]) == bool(progress)
        return plan, applied

    async def scenario() -> None:
        async with serve(manifest_file, world.token, engine, tmp_path / "server.log") as client:
            # A new customer: app, Flycast address, secrets, volume, machine.
            plan, made = await pair(client, {"customer": "acme", "env": {"TIER": "gold"},
                                             "secrets": {"API_KEY": "value-0123456789"}, "cpu_kind": "shared",
                                             "cpus": 2, "memory_mb": 1024})
            assert [(s["op"], s["type"]) for s in plan["steps"]] == [
                ("create", "App"), ("create", "IpAddress"), ("create", "AppSecrets"), ("create", "Volume"),
                ("create", "Machine")]
            # Its monthly cost, from the same preview: nothing before; after, the 1 GB volume and the machine at
            # the table's prices (shared-cpu-2x 1024 MB in syd: $8.11), and the Flycast address named as unknown
            # (the table has no price for it), not $0.
            cost = plan["cost"]
            assert SYD[("shared-cpu-2x", 1024)] == Decimal("8.11")
            assert cost["before"] == {"usd": "0.00", "complete": True, "unknown": []}
            assert cost["after"]["usd"] == cost["delta"]["usd"] == money(VOLUME_GB + Decimal("8.11"))
            assert not cost["after"]["complete"]
            unknown = {u["resource"]: u["reason"] for u in cost["unknown"]}
            assert unknown == {f"address ({app}): private_v6": "fly/pricing.json has no price for private_v6 addresses"}
            assert all(r["after"] is None for r in cost["resources"] if r["resource"] in unknown)
            [machine], [volume] = live(world, app)
            assert machine.state == "started" and machine.id == made["machine"]["id"]
            assert machine.config["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 1024}
            assert machine.config["env"]["TIER"] == "gold" and machine.config["env"]["ARTIFACT_CUSTOMER"] == "acme"
            assert machine.config["metadata"]["artifact_customer"] == "acme"
            assert machine.config["mounts"][0]["volume"] == volume.id and volume.size_gb == 1

            # The same call again: nothing to do, no mutating call.
            plan, again = await pair(client, {"customer": "acme", "env": {"TIER": "gold"}})
            assert plan["steps"] == [] and again["changes"] == 0

            # A partial call changes only what it names: memory; env, secrets, cpus, volume are kept.
            plan, _ = await pair(client, {"customer": "acme", "memory_mb": 2048})
            assert [(s["op"], s["type"], s["changed"]) for s in plan["steps"]] == [("update", "Machine", ["config"])]
            # ... and its dry run's cost moves by exactly the table's two figures: $14.46 - $8.11 (syd).
            assert cost_delta(plan) == SYD[("shared-cpu-2x", 2048)] - SYD[("shared-cpu-2x", 1024)] == Decimal("6.35")
            [updated], _ = live(world, app)
            assert updated.id == machine.id
            assert updated.config["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}
            assert updated.config["env"]["TIER"] == "gold"
            with world.admin() as fly:
                assert set(fly.list_secret_names(app)) == {"API_KEY"}

            # New secrets (the old one unset) and a cleared env: the secrets, then the machine, updated in place.
            plan, _ = await pair(client, {"customer": "acme", "secrets": {"NEW_KEY": "value-9876543210"}, "env": {}})
            assert [(s["op"], s["type"], s["changed"]) for s in plan["steps"]] == [
                ("update", "AppSecrets", ["values"]), ("update", "Machine", ["config", "min_secrets_version"])]
            [updated], _ = live(world, app)
            assert updated.id == machine.id and "TIER" not in updated.config["env"]
            with world.admin() as fly:
                assert set(fly.list_secret_names(app)) == {"NEW_KEY"}

            # Volume grow: extended in place.
            plan, _ = await pair(client, {"customer": "acme", "volume_size_gb": 3})
            assert [(s["op"], s["type"], s["changed"]) for s in plan["steps"]] == [("update", "Volume", ["size_gb"])]
            # The dry run's cost moves by exactly 2 GB at the table's volume price; the Flycast address stays unknown.
            cost = plan["cost"]
            assert [(r["before"], r["after"], r["delta"]) for r in cost["resources"] if r["resource"].startswith(
                "volume ")] == [(money(VOLUME_GB), money(3 * VOLUME_GB), money(2 * VOLUME_GB))]
            assert cost["delta"] == {"usd": money(2 * VOLUME_GB), "complete": False}
            assert cost["before"]["unknown"] == cost["after"]["unknown"] and len(cost["after"]["unknown"]) == 1
            _, [grown] = live(world, app)
            assert grown.id == volume.id and grown.size_gb == 3

            # Volume shrink: refused before any call at Fly.
            world.flysim.clear_calls()
            text = error(await client.call_tool("infra_ensure_app", {"customer": "acme", "volume_size_gb": 2}))
            assert "volume_size_gb: the volume is 3 GB and Fly volumes only grow" in text
            assert mutating(world) == []

            # Region: the dry run says replace and that the data does not move; the apply does that, no orphan.
            plan, moved = await pair(client, {"customer": "acme", "region": "iad"})
            assert {(s["op"], s["type"]) for s in plan["steps"]} == {("replace", "Volume"), ("replace", "Machine")}
            assert next(s for s in plan["steps"] if s["type"] == "Volume")["changed"] == ["region"]
            assert any("the data does not move" in n for n in plan["notes"])
            [machine], [volume] = live(world, app)
            assert machine.region == "iad" and volume.region == "iad" and volume.size_gb == 3
            assert machine.id == moved["machine"]["id"]

            # The machine destroyed outside the control plane: a plain call trusts the state; with refresh, the
            # dry run and the apply read what exists first, and make the machine again on the same volume.
            with world.admin() as fly:
                fly.delete_machine(app, machine.id, force=True)
                fly.wait_machine(app, machine.id, "destroyed")
            plan, _ = await pair(client, {"customer": "acme"})
            assert plan["steps"] == []
            plan, remade = await pair(client, {"customer": "acme", "refresh": True})
            assert [(s["op"], s["type"]) for s in plan["steps"]] == [("create", "Machine")]
            [machine], [same_volume] = live(world, app)
            assert machine.id == remade["machine"]["id"] and same_volume.id == volume.id
            assert machine.config["mounts"][0]["volume"] == volume.id

            # Teardown through the stack; a second one is a clear no-op.
            world.flysim.clear_calls()
            gone = ok(await client.call_tool("infra_destroy_app", {"customer": "acme"}))
            assert gone["destroyed"]
            assert world.admin().find_app(app) is None
            again = ok(await client.call_tool("infra_destroy_app", {"customer": "acme"}))
            assert not again["destroyed"] and "no such customer" in again["detail"]

    anyio.run(scenario)
    audit = (tmp_path / "server.audit.jsonl").read_text()
    for secret in ("value-0123456789", "value-9876543210"):
        assert secret not in audit and secret not in (tmp_path / "server.log").read_text()


def test_concurrent_ensures_on_two_servers_make_one_app(world: SliceWorld, manifest_file: Path,
                                                       engine: dict[str, str], tmp_path: Path) -> None:
    """10 identical calls for one new customer, five through each of two server processes on one backend, the
    first after a call that timed out on the client's side (it retries): one app, one machine, one volume, every
    caller is told the same machine, and each server lists the org's apps once."""
    app = "s1-cust-rush"

    async def scenario() -> list[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(serve(manifest_file, world.token, engine,
                                                             tmp_path / f"server{i}.log")) for i in range(2)]
            world.flysim.clear_calls()
            with pytest.raises(MCPError, match="timed out"):  # the client gives up; the run goes on
                await clients[0].call_tool("infra_ensure_app", {"customer": "rush"}, read_timeout_seconds=1.5)
            results: list[Any] = [None] * 10
            waits: list[str] = []

            async def call(i: int) -> None:
                async def on_progress(_done: float, _total: float | None, message: str | None) -> None:
                    waits.append(message or "")
                results[i] = await clients[i % 2].call_tool("infra_ensure_app", {"customer": "rush"},
                                                            progress_callback=on_progress)
            async with anyio.create_task_group() as tasks:
                for i in range(10):
                    tasks.start_soon(call, i)
            outcomes = [ok(r) for r in results]
            # The second server's run waited for the first one's, and said so to its callers while it did.
            assert any(w.startswith("waiting: an ensure of customer 'rush'") for w in waits), waits
            destroys: list[Any] = [None] * 3

            async def destroy(i: int) -> None:
                destroys[i] = await clients[i % 2].call_tool("infra_destroy_app", {"customer": "rush"})
            async with anyio.create_task_group() as tasks:
                for i in range(3):
                    tasks.start_soon(destroy, i)
            for r in destroys:
                assert not r.is_error or "busy" in r.content[0].text, r.content[0].text
            return outcomes

    outcomes = anyio.run(scenario)
    assert len({o["machine"]["id"] for o in outcomes}) == 1
    # A new customer takes the worker pool's template: its guest, its auto stop.
    template = world.manifest["apps"]["worker_pool"]["machine_template"]
    assert {k: outcomes[0]["settings"][k] for k in ("cpu_kind", "cpus", "memory_mb")} == template["guest"]
    assert outcomes[0]["settings"]["auto_stop"] == template["services"][0]["autostop"]
    listings = [c for c in world.flysim.calls() if c["operation"] == "Apps_list"]
    assert len(listings) <= 2  # one per server process, shared by its concurrent calls
    creates = [c for c in world.flysim.calls() if c["operation"] in ("Apps_create", "Machines_create", "Volumes_create")]
    assert sorted(c["operation"] for c in creates if c["status"] < 300) == ["Apps_create", "Machines_create",
                                                                           "Volumes_create"]
    assert world.admin().find_app(app) is None


def test_a_machine_that_crashes_on_boot_is_reported_with_progress_first(world: SliceWorld, manifest_file: Path,
                                                                        engine: dict[str, str], tmp_path: Path) -> None:
    """Progress arrives while the run goes on; a crash on boot is the answer (from Fly's events), not a timeout."""
    world.flysim.add_fault(kind="crash_on_boot", app="s1-cust-crash")
    progress: list[str] = []

    async def on_progress(_done: float, _total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def scenario() -> tuple[str, dict[str, Any]]:
        async with serve(manifest_file, world.token, engine, tmp_path / "server.log") as client:
            # An app of the customer's name made outside a customer stack is not adopted (it would get a second
            # machine and volume): refused, nothing changed.
            with world.admin() as fly:
                fly.create_app("s1-cust-legacy", "personal")
            world.flysim.clear_calls()
            legacy = error(await client.call_tool("infra_ensure_app", {"customer": "legacy"}))
            assert "app s1-cust-legacy exists but has no customer stack" in legacy and mutating(world) == []
            world.admin().delete_app("s1-cust-legacy")
            crashed = error(await client.call_tool("infra_ensure_app", {"customer": "crash", "volume_size_gb": 0},
                                                   progress_callback=on_progress))
            world.flysim.clear_faults()
            return crashed, ok(await client.call_tool("infra_destroy_app", {"customer": "crash"}))

    try:
        text, gone = anyio.run(scenario)
    finally:
        world.flysim.clear_faults()
    assert "crashed on boot" in text and "exited with code 1" in text and "Traceback" not in text
    assert "creating App app" in progress and "creating Machine machine" in progress
    assert gone["destroyed"] and world.admin().find_app("s1-cust-crash") is None


def _server_pid(manifest_file: Path) -> int:
    """The `controlplane serve` process this test started (a child of this process)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"serve" in cmdline and str(manifest_file).encode() in cmdline:
            return int(entry.name)
    raise AssertionError("the server process was not found")


def test_a_server_killed_mid_run_leaves_no_engine_and_the_next_call_converges(
        world: SliceWorld, manifest_file: Path, engine: dict[str, str], tmp_path: Path) -> None:
    """SIGKILL of the server while the customer's machine is being made: the job process sees its parent gone and
    stops the engine; nothing of it outlives it; a new server's call ends with one app, one machine, one volume."""
    from enginejob import procs

    jobs = str(Path(engine["ARTIFACT_STATE_DIR"]) / "jobs")

    async def killed() -> None:
        machine_step = anyio.Event()

        async def on_progress(_done: float, _total: float | None, message: str | None) -> None:
            if (message or "").startswith("creating Machine"):
                machine_step.set()
        with anyio.move_on_after(120):
            try:
                async with serve(manifest_file, world.token, engine, tmp_path / "server.log") as client:
                    async with anyio.create_task_group() as tasks:
                        async def call() -> None:
                            with contextlib.suppress(Exception):
                                await client.call_tool("infra_ensure_app", {"customer": "killed"},
                                                       progress_callback=on_progress)
                        tasks.start_soon(call)
                        await machine_step.wait()
                        assert procs.marked(jobs)  # the engine run is going
                        os.kill(_server_pid(manifest_file), signal.SIGKILL)
            except BaseException as exc:  # noqa: BLE001 - the connection ends with the server
                if isinstance(exc, AssertionError):
                    raise

    anyio.run(killed)
    deadline = time.monotonic() + 60
    while procs.marked(jobs):  # the job stops its engine and goes: nothing of it may stay
        assert time.monotonic() < deadline, f"left running: {procs.marked(jobs)}"
        time.sleep(0.2)

    async def again() -> tuple[dict[str, Any], dict[str, Any]]:
        async with serve(manifest_file, world.token, engine, tmp_path / "server2.log") as client:
            made = ok(await client.call_tool("infra_ensure_app", {"customer": "killed"}))
            machines, volumes = live(world, "s1-cust-killed")
            assert [m.id for m in machines] == [made["machine"]["id"]] and len(volumes) == 1
            return made, ok(await client.call_tool("infra_destroy_app", {"customer": "killed"}))

    made, gone = anyio.run(again)
    assert made["machine"]["state"] == "started" and gone["destroyed"]
    assert world.admin().find_app("s1-cust-killed") is None
