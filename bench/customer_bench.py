"""Benchmark section `customer`: `infra_ensure_app` of a new customer through the control plane (its own process
over stdio, the MCP SDK's client), against its own critical path, and 10 new customers at once.

The critical path of a new customer is the app create, then its volume create, then its machine create, image
pull and boot (the Flycast address and the secrets run beside the volume); each costs what flysim's latency
profile says (bench/critical_path.py's model). Everything above it is the engine (a job process, the Pulumi
CLI, the language host and the provider processes) and the control plane.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import anyio

from bench.critical_path import cost
from fly import FlyClient, FlyConnection
from fly.appconfig import load_fly_toml, machine_config
from flysim.latency import get_profile
from flysim.testing import FlysimServer

REPO = Path(__file__).resolve().parent.parent
ORG = "personal"
PREFIX = "bc"
CRITICAL_CHAIN = ("app", "volume", "machine")


def _manifest(flysim: FlysimServer) -> tuple[dict[str, Any], str]:
    """A slice's manifest as the control plane reads it (the worker pool's template is what customers get),
    and an org token of its org."""
    image = "registry.fly.io/artifact-worker:2026.11.1"
    template = machine_config(load_fly_toml(REPO / "deploy" / "fly.worker-pool.toml"), image=image,
                              env={"PRIMARY_REGION": "syd"})
    with FlyClient(FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                         environ={})) as fly:
        fly.create_app(f"{PREFIX}-worker-pool", ORG)
        # The NFS a dry run checks is visible: its app, its Flycast address, a started machine.
        fly.create_app(f"{PREFIX}-nfs", ORG)
        flycast = fly.assign_ip(f"{PREFIX}-nfs", "private_v6", org_slug=ORG)
        nfs = fly.create_machine(f"{PREFIX}-nfs", {"image": "registry.fly.io/artifact-nfs:2026.11.1"}, region="syd")
        fly.wait_machine(f"{PREFIX}-nfs", nfs.id, "started", instance_id=nfs.instance_id)
        org_id = fly.get_organization(ORG).id
        token = fly.create_org_token(org_id, f"{PREFIX}-control-plane")["token"]
    manifest = {"slice": PREFIX, "org": {"slug": ORG, "id": org_id, "name": ORG},
                "apps": {"nfs": {"name": f"{PREFIX}-nfs", "region": "syd", "flycast": flycast.ip,
                                 "image": "registry.fly.io/artifact-nfs:2026.11.1"},
                         "worker_pool": {"name": f"{PREFIX}-worker-pool", "region": "syd", "image": image,
                                         "machine_template": template}},
                "fly": {"api_base_url": flysim.url, "flaps_base_url": flysim.url}}
    return manifest, token


@asynccontextmanager
async def _server(manifest: Path, token: str, env: dict[str, str], log: Path) -> AsyncIterator[Any]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, cwd=str(REPO), env={"FLY_ORG_TOKEN": token, **env},
                                   args=["-m", "controlplane", "serve", "--stdio", "--allow-writes", "--manifest",
                                         str(manifest), "--audit-log", str(log.with_suffix(".audit.jsonl"))])
    with log.open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            yield client


async def _timed_call(client: Any, tool: str, args: dict[str, Any],
                      marks: list[tuple[float, str]] | None = None) -> tuple[float, bool, str]:
    started = time.perf_counter()

    async def progress(_done: float, _total: float | None, message: str | None) -> None:
        if marks is not None:
            marks.append((time.perf_counter() - started, message or ""))
    result = await client.call_tool(tool, args, progress_callback=progress)
    seconds = time.perf_counter() - started
    return seconds, not result.is_error, result.content[0].text[:200] if result.is_error else ""


def bench_customers(latency: str, pulumi_bin: Path, repeat: int = 3, concurrent: int = 10) -> dict[str, Any]:
    profile = get_profile(latency)
    path = sum(cost(kind, profile) for kind in CRITICAL_CHAIN)

    with FlysimServer(orgs=[ORG], latency=latency, rate_limit=True) as flysim, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, token = _manifest(flysim)
        (root / "manifest.json").write_text(json.dumps(manifest))
        (root / "backend").mkdir()
        env = {"PULUMI_BACKEND_URL": f"file://{root / 'backend'}", "PULUMI_CONFIG_PASSPHRASE": "bench",
               "ARTIFACT_STATE_DIR": str(root / "state"), "ARTIFACT_PULUMI_BIN": str(pulumi_bin),
               "PATH": f"{pulumi_bin}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
               "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
               "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", tmp)}
        result: dict[str, Any] = {"critical_path_seconds": round(path, 3),
                                  "critical_path": " > ".join(CRITICAL_CHAIN)}

        async def scenario() -> None:
            async with _server(root / "manifest.json", token, env, root / "server.log") as client:
                fresh: list[float] = []
                for i in range(repeat):
                    flysim.clear_calls()
                    marks: list[tuple[float, str]] = []
                    seconds, ok, error = await _timed_call(client, "infra_ensure_app", {"customer": f"new{i}"}, marks)
                    if not ok:
                        result["error"] = error
                        return
                    fresh.append(round(seconds, 2))
                    if marks:  # before the engine's first step at Fly, and after its last
                        result.setdefault("head_seconds", []).append(round(marks[0][0], 2))
                        result.setdefault("tail_seconds", []).append(round(seconds - marks[-1][0], 2))
                    if i == 0:
                        calls = flysim.calls()
                        result["fresh_calls"] = {"calls": len(calls), "mutating": sum(c["mutating"] for c in calls),
                                                 "rate_limited": sum(c["status"] == 429 for c in calls)}
                result["fresh_runs"] = fresh
                result["fresh_median"] = statistics.median(fresh)
                result["ratio"] = round(statistics.median(fresh) / path, 2)
                flysim.clear_calls()
                seconds, ok, _ = await _timed_call(client, "infra_ensure_app", {"customer": "new0"})
                result["no_change"] = {"seconds": round(seconds, 2), "ok": ok,
                                       "mutating": sum(c["mutating"] for c in flysim.calls())}
                seconds, ok, error = await _timed_call(client, "infra_ensure_app", {"customer": "dry", "dry_run": True})
                result["dry_run_new"] = {"seconds": round(seconds, 2), "ok": ok, **({"error": error} if error else {})}

                flysim.clear_calls()
                outcomes: list[tuple[float, bool, str]] = []

                async def one(i: int) -> None:
                    outcomes.append(await _timed_call(client, "infra_ensure_app", {"customer": f"many{i}"}))
                started = time.perf_counter()
                async with anyio.create_task_group() as tasks:
                    for i in range(concurrent):
                        tasks.start_soon(one, i)
                wall = time.perf_counter() - started
                calls = flysim.calls()
                result["concurrent"] = {
                    "n": concurrent, "converged": sum(ok for _, ok, _ in outcomes), "wall_seconds": round(wall, 2),
                    "slowest_seconds": round(max(s for s, _, _ in outcomes), 2),
                    "calls": len(calls), "rate_limited": sum(c["status"] == 429 for c in calls),
                    "errors": dict(collections.Counter(e for _, ok, e in outcomes if not ok))}
                async with anyio.create_task_group() as tasks:
                    for name in [f"new{i}" for i in range(repeat)] + [f"many{i}" for i in range(concurrent)]:
                        tasks.start_soon(client.call_tool, "infra_destroy_app", {"customer": name})
            result["apps_left"] = [a["name"] for a in flysim.state()["apps"] if "-cust-" in a["name"]]

        anyio.run(scenario)
    return result


def render(r: dict[str, Any]) -> list[str]:
    if "error" in r and "fresh_runs" not in r:
        return [f"customer app: FAILED {r['error']}"]
    c = r["concurrent"]
    return [
        f"{'customer: new app':<22}{r['fresh_median']:>9.2f}  (median of {len(r['fresh_runs'])}: "
        f"{', '.join(f'{x:.2f}' for x in r['fresh_runs'])} s; {r['ratio']:.2f} x its critical path "
        f"{r['critical_path_seconds']:.2f} s = {r['critical_path']}; {r['fresh_calls']['calls']} calls, "
        f"{r['fresh_calls']['mutating']} mutating, {r['fresh_calls']['rate_limited']} 429s)",
        f"{'  before / after Fly':<22}{statistics.median(r.get('head_seconds') or [0]):>9.2f}  s before the engine's "
        f"first step (job process, stack select, settings read, engine start), median; "
        f"{statistics.median(r.get('tail_seconds') or [0]):.2f} s after its last (the Automation API's reads, job "
        "end)",
        f"{'customer: no change':<22}{r['no_change']['seconds']:>9.2f}  ({r['no_change']['mutating']} mutating calls)",
        f"{'customer: dry run new':<22}{r['dry_run_new']['seconds']:>9.2f}"
        + ("" if r["dry_run_new"]["ok"] else f"  FAILED: {r['dry_run_new'].get('error', '')}"),
        f"{'customers at once':<22}{c['wall_seconds']:>9.2f}  ({c['converged']}/{c['n']} converged, slowest "
        f"{c['slowest_seconds']:.2f} s, {c['calls']} calls, {c['rate_limited']} 429s"
        + (f"; errors: {c['errors']}" if c["errors"] else "") + ")"
        + (f"  LEFT: {', '.join(r['apps_left'])}" if r.get("apps_left") else ""),
    ]
