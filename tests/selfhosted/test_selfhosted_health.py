"""The health gate as the provider process runs it: machine checks read back through the Machines API,
the restart policy read back, then the relay's public /health (flysim's <app>.fly.dev stand-in)."""

from __future__ import annotations

from typing import Any

import pytest

from fly.client import FlyClient
from fly.connection import FlyConnection
from flysim.testing import FlysimServer
from selfhosted.component import critical_after, expected_checks, relay_config, vm_config
from selfhosted.health import HealthCheckFailed, HealthGateProvider
from selfhosted.settings import DeploySettings
from selfhosted.target import flysim_target


@pytest.fixture
def client(flysim: FlysimServer, monkeypatch: pytest.MonkeyPatch) -> FlyClient:
    monkeypatch.setenv("FLY_API_TOKEN", flysim.token)  # as the runner hands it to the provider process
    with FlyClient(FlyConnection(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url)) as c:
        yield c


def _pair(client: FlyClient, settings: DeploySettings, *, public_ip: bool = True) -> dict[str, Any]:
    """Both machines as the component makes them; the HealthGate's inputs as the engine sends them."""
    for app in (settings.relay_app, settings.vm_app):
        client.create_app(app, "personal")
    if public_ip:
        client.assign_ip(settings.relay_app, "shared_v4")
    volume = client.create_volume(settings.vm_app, name="agentdata", region=settings.region, size_gb=1)
    relay = client.create_machine(settings.relay_app, relay_config(settings), name="r", region=settings.region)
    vm = client.create_machine(settings.vm_app, vm_config(settings, volume.id), name="v", region=settings.region)
    for app, machine in ((settings.relay_app, relay), (settings.vm_app, vm)):
        client.wait_machine(app, machine.id, "started", timeout=10)
    target = flysim_target(client._connection.flaps_base_url)
    probe = target.health_probe(settings.relay_app)
    return {"machines": [
        {"app": settings.relay_app, "machine_id": relay.id, "checks": expected_checks("relay"), "restart_policy": "always",
         "critical_after": critical_after("relay", target)},
        {"app": settings.vm_app, "machine_id": vm.id, "checks": expected_checks("vm"), "restart_policy": "always",
         "critical_after": critical_after("vm", target)}],
        "probe": {"app": settings.relay_app, "url": probe.url, "host": probe.host},
        "api_base_url": target.api_base_url, "flaps_base_url": target.flaps_base_url, "timeout": 30}


def test_healthy_pair_passes_and_reports_what_it_read(client: FlyClient) -> None:
    props = _pair(client, DeploySettings(prefix="alice"))
    outs = HealthGateProvider().create(props).outs
    assert [(c["app"], c["check"], c["status"]) for c in outs["checks"]] == [
        ("alice-relay", "health", "passing"), ("alice-vm", "health", "passing")]
    assert outs["probe_result"]["url"] == "https://alice-relay.fly.dev/health"
    assert outs["probe_result"]["status_code"] == 200


def test_the_checks_fly_runs_are_those_of_the_fly_toml(client: FlyClient) -> None:
    props = _pair(client, DeploySettings(prefix="alice"))
    relay = client.get_machine("alice-relay", props["machines"][0]["machine_id"])
    assert relay.config["checks"]["health"] == {"type": "http", "port": 8080, "path": "/health", "method": "GET",
                                                "interval": "10s", "timeout": "2s", "grace_period": "5s"}
    assert relay.config["restart"] == {"policy": "always"}


def test_an_unhealthy_vm_image_fails_naming_the_app_check_and_output(client: FlyClient) -> None:
    props = _pair(client, DeploySettings(prefix="alice", vm_image="registry.fly.io/artifact-agent-vm:unhealthy"))
    with pytest.raises(HealthCheckFailed) as exc:
        HealthGateProvider().create(props)
    assert "alice-vm: check 'health' is critical (dial tcp [fdaa::3]:8080: connect: connection refused)" in str(exc.value)
    assert "alice-relay" not in str(exc.value)


def test_a_check_failing_at_runtime_fails_the_gate(client: FlyClient, flysim: FlysimServer) -> None:
    props = _pair(client, DeploySettings(prefix="alice"))
    flysim.add_fault(kind="check_failure", app="alice-relay", message="GET /health: 500 Internal Server Error")
    with pytest.raises(HealthCheckFailed, match="alice-relay: check 'health' is critical \\(GET /health: 500"):
        HealthGateProvider().create(props)


def test_a_relay_without_public_ip_fails_the_probe(client: FlyClient) -> None:
    props = _pair(client, DeploySettings(prefix="alice"), public_ip=False)
    props["timeout"] = 3
    with pytest.raises(HealthCheckFailed, match="GET https://alice-relay.fly.dev/health did not answer 200 ok "
                                                "\\(HTTP 503: no public IP\\)"):
        HealthGateProvider().create(props)


def test_a_restart_policy_fly_does_not_hold_fails(client: FlyClient) -> None:
    props = _pair(client, DeploySettings(prefix="alice"))
    props["machines"][1]["restart_policy"] = "on-failure"
    with pytest.raises(HealthCheckFailed, match="alice-vm: machine .* has restart policy 'always' on Fly, "
                                                "expected 'on-failure'"):
        HealthGateProvider().create(props)


def test_on_fly_a_check_gets_its_grace_period_and_an_interval() -> None:
    from selfhosted.target import fly_target

    assert critical_after("relay", fly_target()) == 15.0  # grace_period 5s + interval 10s (fly.relay.toml)
    assert critical_after("vm", fly_target()) == 20.0
