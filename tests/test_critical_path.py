"""The benchmark's critical path: the longest chain of Fly work through the graph the engine records
(a stack export's resources), each kind costed from flysim's latency profile."""

from __future__ import annotations

import pytest

from bench.critical_path import critical_path, kind_of
from flysim.latency import get_profile

FLY = "pulumi-python:dynamic/fly"


def resource(name: str, kind: str, deps: list[str] = (), parent: str | None = None, custom: bool = True) -> dict:
    type_ = f"{FLY}:{kind}" if custom else f"artifact:slice:{kind}"
    return {"urn": f"urn:pulumi:s::p::{type_}::{name}", "type": type_, "custom": custom,
            "dependencies": [f"urn:pulumi:s::p::{d}" for d in deps], **({"parent": parent} if parent else {})}


def test_the_longest_chain_wins_and_a_component_dependency_stands_for_its_resources() -> None:
    profile = get_profile("realistic")
    nfs = resource("nfs", "NfsServer", custom=False)
    state = [
        resource("org", "Organization"),
        resource("app", "App", [f"{FLY}:Organization::org"], parent=nfs["urn"]),
        resource("volume", "Volume", [f"{FLY}:App::app"], parent=nfs["urn"]),
        resource("machine", "Machine", [f"{FLY}:Volume::volume"], parent=nfs["urn"]),
        nfs,
        # Depends on the component: so on everything inside it, the machine included.
        resource("router", "Machine", ["artifact:slice:NfsServer::nfs"]),
        resource("flycast", "IpAddress", [f"{FLY}:App::app"]),  # a short branch beside the chain
    ]
    path = critical_path(state, profile)
    assert [s.name for s in path.steps] == ["org", "app", "volume", "machine", "router"]
    machine = profile.request + profile.create + profile.start
    # org and app: a round trip each; the volume: a round trip and its provisioning; two machines.
    assert path.seconds == pytest.approx(2 * profile.request + (profile.request + profile.volume_create) + 2 * machine)
    assert path.unclassified == []


def test_kinds_come_from_type_names_and_untyped_resources_from_their_outputs() -> None:
    assert kind_of({"type": f"{FLY}:OrgToken"}) == "org_token"
    assert kind_of({"type": "pulumi-python:dynamic:Resource", "outputs": {"volume_id": "vol_1", "zone": "z"}}) == "volume"
    assert kind_of({"type": "pulumi-python:dynamic:Resource", "outputs": {"whatever": 1}}) is None


def test_a_cycle_is_reported() -> None:
    state = [resource("a", "App", [f"{FLY}:App::b"]), resource("b", "App", [f"{FLY}:App::a"])]
    with pytest.raises(ValueError, match="dependency cycle"):
        critical_path(state, get_profile("realistic"))
