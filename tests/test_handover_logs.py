"""Phase 7's handover holds the router's, exec's and NFS's log lines, read through the logs API."""

from __future__ import annotations

import json

from fly import FlyClient, FlyConnection
from ops.handover import write_handover


def test_handover_holds_router_and_exec_log_lines(flysim, tmp_path) -> None:
    connection = FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                       environ={})
    apps = {"nfs": "h-nfs", "router": "h-fly-router", "exec": "h-fly-exec", "worker_pool": "h-worker-pool"}
    ids = {}
    with FlyClient(connection) as fly:
        for role, name in apps.items():
            fly.create_app(name, "personal")
        volume = fly.create_volume("h-nfs", name="nfsdata", region="syd", size_gb=1)
        for role, image, extra in (
                ("nfs", "registry.fly.io/artifact-fly-nfs:1", {"mounts": [{"volume": volume.id, "path": "/data"}]}),
                ("router", "registry.fly.io/artifact-fly-router:1", {"init": {"cmd": ["router", "serve"]}}),
                ("exec", "registry.fly.io/artifact-fly-exec:1", {})):
            machine = fly.create_machine(apps[role], {"image": image, **extra}, region="syd")
            fly.wait_machine(apps[role], machine.id, "started", timeout=10)
            ids[role] = machine.id
    outputs = {"apps": {role: {"name": name} for role, name in apps.items()}, "controlPlaneToken": "sekrit"}
    flysim.clear_calls()
    path = write_handover("h", outputs, {"controlPlaneToken"}, connection, tmp_path)
    live = json.loads(path.read_text())["live"]
    assert "sekrit" not in path.read_text()
    # Each read follows next_token once to an empty page; the worker pool's logs are not read.
    assert sorted(c["path"] for c in flysim.calls() if c["operation"] == "Logs_get") == sorted(
        f"/api/v1/apps/{apps[role]}/logs" for role in ("exec", "nfs", "router") for _ in range(2))
    router = live["router"]["logs"]
    assert any(line.endswith(f"app[{ids['router']}] syd [info]  INFO Preparing to run: `router serve` as root")
               for line in router)
    assert any(f"runner[{ids['exec']}] syd [info] Machine started" in line for line in live["exec"]["logs"])
    assert any(line.endswith(f"app[{ids['nfs']}] syd [info] self-mount ok") for line in live["nfs"]["logs"])
    assert "logs" not in live["worker_pool"]


def test_logs_out_of_reach_leave_the_rest_of_the_handover(flysim, tmp_path) -> None:
    connection = FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                       environ={})
    with FlyClient(connection) as fly:
        fly.create_app("h2-fly-router", "personal")
        machine = fly.create_machine("h2-fly-router", {"image": "registry.fly.io/artifact-fly-router:1"}, region="syd")
        fly.wait_machine("h2-fly-router", machine.id, "started", timeout=10)
    flysim.add_fault(operation="Logs_get", app="h2-fly-router", status=403, message="logs not allowed")
    path = write_handover("h2", {"apps": {"router": {"name": "h2-fly-router"}}}, set(), connection, tmp_path)
    router = json.loads(path.read_text())["live"]["router"]
    assert [m["id"] for m in router["machines"]] == [machine.id] and "logs" not in router
    assert "GET /api/v1/apps/h2-fly-router/logs failed with HTTP 403" in router["logs_error"]
