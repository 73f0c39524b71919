"""An app's logs, read by the Fly client from flysim as `fly logs --no-tail` reads them from Fly.

The request and answer shapes are fly-go's (superfly/fly-go `resource_logs.go`, `GetAppLogs`: `GET
<api>/api/v1/apps/<app>/logs` with `next_token` always present, `instance` and `region` when given, the
token in `Authorization`; the answer decoded into `getLogsResponse` {data[].attributes: LogEntry,
meta.next_token}) and flyctl's (`logs/polling.go` keeps the last non-empty next_token; `internal/render/
logs.go` parses the timestamp as RFC 3339 with nanoseconds and prints `<meta.event.provider>[<instance>]`).
The lines are what flysim's images do: the NFS image's self-mount check at boot, a release command's
output, a crashing process's output.
"""

from __future__ import annotations

import re

import httpx
import pytest

from fly import FlyClient, FlyConnection, FlyMachineCrashed, RetryPolicy
from fly.providers import AppProvider, MachineProvider

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
NFS_IMAGE = "registry.fly.io/artifact-fly-nfs:1"


class Recorder(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def client(flysim, transport: httpx.BaseTransport | None = None) -> FlyClient:
    connection = FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                       environ={})
    return FlyClient(connection, retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.05), transport=transport)


def nfs_machine(fly: FlyClient, app: str, *, with_volume: bool) -> str:
    config: dict = {"image": NFS_IMAGE, "init": {"cmd": ["/fly-nfs/start.sh"]}}
    if with_volume:
        volume = fly.create_volume(app, name="nfsdata", region="syd", size_gb=1)
        config["mounts"] = [{"volume": volume.id, "path": "/data"}]
    machine = fly.create_machine(app, config, region="syd")
    fly.wait_machine(app, machine.id, "started", timeout=10)
    return machine.id


def test_logs_are_read_as_fly_go_reads_them(flysim) -> None:
    recorder = Recorder()
    with client(flysim, recorder) as fly:
        fly.create_app("logs-nfs", "personal")
        good = nfs_machine(fly, "logs-nfs", with_volume=True)
        bad = nfs_machine(fly, "logs-nfs", with_volume=False)
        recorder.requests.clear()

        mine = fly.app_logs("logs-nfs", instance=good, region="syd")
        request = recorder.requests[0]
        assert request.method == "GET" and request.url.path == "/api/v1/apps/logs-nfs/logs"
        # fly-go sends next_token even when empty; flyctl drops the region once a machine is named.
        assert dict(request.url.params) == {"next_token": "", "instance": good}
        assert request.headers["authorization"] == f"Bearer {flysim.token}"
        assert [e.message for e in mine if e.provider == "app"] == [
            " INFO Starting init (commit: flysim)...", " INFO Preparing to run: `/fly-nfs/start.sh` as root",
            "self-mount ok"]
        assert {(e.instance, e.region, e.level) for e in mine} == {(good, "syd", "info")}
        assert "Machine started" in [e.message for e in mine if e.provider == "runner"]
        assert mine[-1].line().endswith(f" app[{good}] syd [info] self-mount ok")

        # The NFS machine without its volume logs the mount failure, not "mount ok".
        theirs = [e.message for e in fly.app_logs("logs-nfs", instance=bad)]
        assert any(m.startswith("mount.nfs: export /data not available") for m in theirs)
        assert not any("mount ok" in m for m in theirs)

    # The raw answer, field by field as fly-go decodes it.
    with flysim.client() as http:
        raw = http.get("/api/v1/apps/logs-nfs/logs", params={"next_token": "", "region": "syd"}).json()
    assert set(raw) == {"data", "meta"} and raw["meta"]["next_token"]
    for item in raw["data"]:
        assert set(item) == {"id", "attributes"}
        attrs = item["attributes"]
        assert set(attrs) == {"timestamp", "message", "level", "instance", "region", "meta"}
        assert RFC3339_NANO.match(attrs["timestamp"]) and attrs["instance"] in (good, bad)
        assert attrs["meta"]["event"]["provider"] in ("app", "runner")
    assert [i["attributes"]["timestamp"] for i in raw["data"]] == sorted(i["attributes"]["timestamp"]
                                                                          for i in raw["data"])


def test_next_token_pages_forward_and_a_read_is_bounded(flysim) -> None:
    with client(flysim) as fly, flysim.client() as http:
        fly.create_app("logs-pages", "personal")
        machine = fly.create_machine("logs-pages", {"image": "registry.fly.io/demo:1"}, region="syd")
        fly.wait_machine("logs-pages", machine.id, "started", timeout=10)
        first = http.get("/api/v1/apps/logs-pages/logs", params={"next_token": ""}).json()
        token = first["meta"]["next_token"]
        assert [i["attributes"]["message"] for i in first["data"]][-1] == "Machine started"
        # Nothing new: an empty page and the same cursor, which flyctl's poller keeps.
        again = http.get("/api/v1/apps/logs-pages/logs", params={"next_token": token}).json()
        assert again == {"data": [], "meta": {"next_token": token}}
        fly.stop_machine("logs-pages", machine.id)
        fly.wait_machine("logs-pages", machine.id, "stopped", timeout=10)
        later = http.get("/api/v1/apps/logs-pages/logs", params={"next_token": token}).json()
        assert [i["attributes"]["message"] for i in later["data"]] == [
            " INFO Sending signal SIGINT to main child process", " INFO Main child exited normally with code: 0",
            " INFO Starting clean up."]
        bad = http.get("/api/v1/apps/logs-pages/logs", params={"next_token": "nonsense"})
        assert bad.status_code == 400 and "next_token" in bad.json()["error"]

        # More lines than a page: 30 restarts. The client follows next_token and keeps the newest lines.
        for _ in range(30):
            flysim.reset_rate_limits()  # Fly's per-machine action limit would make this a 30-second wait
            fly.start_machine("logs-pages", machine.id) if fly.get_machine("logs-pages", machine.id).state == "stopped" \
                else fly.restart_machine("logs-pages", machine.id)
            fly.wait_machine("logs-pages", machine.id, "started", timeout=10)
        everything = http.get("/api/v1/apps/logs-pages/logs", params={"next_token": ""}).json()["data"]
        assert len(everything) == 100  # flysim's page
        newest = fly.app_logs("logs-pages", max_lines=7)
        assert len(newest) == 7 and newest[-1].message == "Machine started"
        assert [e.message for e in newest] == [i["attributes"]["message"] for i in everything[-7:]]


def test_a_crashed_machine_names_where_its_logs_are_and_they_are_there(flysim) -> None:
    c = {"fly_api": {"api_base_url": flysim.url, "flaps_base_url": flysim.url}, "fly_token": flysim.token}
    AppProvider().create({"name": "crash-logs", "org_slug": "personal", **c})
    flysim.add_fault(kind="crash_on_boot", app="crash-logs", message="panic: cannot read /etc/router.toml")
    with pytest.raises(FlyMachineCrashed) as exc:
        MachineProvider().create({"app": "crash-logs", "name": "crash-0", "region": "syd",
                                  "config": {"image": "img:1", "restart": {"policy": "no"}}, "wait_timeout": 30, **c})
    machine_id = exc.value.machine_id
    message = str(exc.value)
    assert f"fly logs --no-tail -a crash-logs --machine {machine_id}" in message
    assert f"GET /api/v1/apps/crash-logs/logs?instance={machine_id}" in message
    with client(flysim) as fly:
        lines = [e.message for e in fly.app_logs("crash-logs", instance=machine_id)]
    assert lines[-3:] == ["panic: cannot read /etc/router.toml", " INFO Main child exited normally with code: 1",
                          " INFO Starting clean up."]
