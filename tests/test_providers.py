"""The dynamic providers' check/diff/create/read/update/delete against flysim over real HTTP."""

from __future__ import annotations

import pytest

from fly.providers import AppProvider, MachineProvider, VolumeProvider


def conn(flysim) -> dict:
    return {"fly_api": {"api_base_url": flysim.url, "flaps_base_url": flysim.url}, "fly_token": flysim.token}


def test_check_reports_bad_inputs_by_property() -> None:
    result = AppProvider().check({}, {"name": "Bad_Name", "org_slug": "personal"})
    assert [f.property for f in result.failures] == ["name"]
    assert "app input name" in result.failures[0].reason


# Values unknown during preview are tested with what the engine really sends, through real previews:
# tests/e2e/test_provider_layer.py.


def test_volume_check_refuses_to_shrink() -> None:
    news = {"app": "a", "name": "nfsdata", "region": "syd", "size_gb": 5, "encrypted": True}
    result = VolumeProvider().check({**news, "size_gb": 10}, news)
    assert [f.property for f in result.failures] == ["size_gb"]
    assert "can only grow" in result.failures[0].reason


def test_diff_ignores_connection_and_replaces_only_when_fly_cannot_update() -> None:
    olds = {"app": "a", "name": "m", "region": "syd", "config": {"image": "x:1", "mounts": [{"volume": "vol_1", "path": "/d"}]},
            "fly_token": "t1", "fly_api": {"flaps_base_url": "http://a"}}
    same = MachineProvider().diff("id", olds, {**olds, "fly_token": "t2", "fly_api": {"flaps_base_url": "http://b"}})
    assert same.changes is False
    image = MachineProvider().diff("id", olds, {**olds, "config": {**olds["config"], "image": "x:2"}})
    # An input change is "unknown" to the SDK's dynamic provider server, so the engine names the keys.
    assert image.changes is None and image.replaces == []
    volume = MachineProvider().diff("id", olds, {**olds, "config": {**olds["config"], "mounts": [{"volume": "vol_2", "path": "/d"}]}})
    assert volume.replaces == ["config"]
    region = MachineProvider().diff("id", olds, {**olds, "region": "ams"})
    assert region.replaces == ["region"]


def test_app_volume_machine_lifecycle(flysim) -> None:
    c = conn(flysim)
    app_props = {"name": "p-nfs", "org_slug": "personal", "network": None, **c}
    app = AppProvider().create(app_props)
    assert app.id == "p-nfs" and app.outs["org_slug"] == "personal"

    vol_props = {"app": "p-nfs", "name": "nfsdata", "region": "syd", "size_gb": 1, "encrypted": True, **c}
    vol = VolumeProvider().create(vol_props)
    assert vol.outs["zone"]
    grown = VolumeProvider().update(vol.id, vol.outs, {**vol_props, "size_gb": 2})
    assert VolumeProvider().read(vol.id, grown.outs).outs["size_gb"] == 2

    config = {"image": "img:1", "mounts": [{"volume": vol.id, "path": "/data"}]}
    m_props = {"app": "p-nfs", "name": "p-nfs-0", "region": "syd", "config": config, "skip_launch": False,
               "min_secrets_version": None, "wait_timeout": 30, **c}
    machine = MachineProvider().create(m_props)
    assert machine.outs["state"] == "started"

    updated = MachineProvider().update(machine.id, machine.outs, {**m_props, "config": {**config, "image": "img:2"}})
    assert updated.outs["machine_id"] == machine.id
    assert updated.outs["instance_id"] != machine.outs["instance_id"]

    # Creating the same machine again (a rerun after a crash) adopts it instead of duplicating: names are
    # unique in an app, and the already_exists answer names the machine.
    flysim.clear_calls()
    again = MachineProvider().create(m_props)
    assert again.id == machine.id
    assert len([m for a in flysim.state()["apps"] for m in a["machines"] if m["state"] != "destroyed"]) == 1
    assert [c["operation"] for c in flysim.calls()][:1] == ["Machines_create"]  # no listing first

    MachineProvider().delete(machine.id, updated.outs)
    assert MachineProvider().read(machine.id, updated.outs).id == ""
    VolumeProvider().delete(vol.id, grown.outs)
    AppProvider().delete(app.id, app.outs)
    assert AppProvider().read(app.id, app.outs).id == ""


def test_a_create_never_swaps_the_volume_mounted_on_a_machine_it_finds(flysim) -> None:
    """A second deploy without the first one's state (a stale plan) makes a new volume and then meets the
    machine of its name (409): adopting it would mount the new, empty volume where the agent's data is."""
    from fly import FlyVolumeSwapRefused

    c = conn(flysim)
    AppProvider().create({"name": "swap-vm", "org_slug": "personal", "network": None, **c})
    vol = {"app": "swap-vm", "name": "agentdata", "region": "ams", "size_gb": 1, "encrypted": True, **c}
    first = VolumeProvider().create(vol)
    m_props = {"app": "swap-vm", "name": "swap-vm-0", "region": "ams", "skip_launch": False,
               "min_secrets_version": None, "wait_timeout": 30, **c}
    machine = MachineProvider().create({**m_props, "config": {"image": "img:1", "mounts": [
        {"volume": first.id, "path": "/data"}]}})
    second = VolumeProvider().create(vol)  # the first is attached: not adoptable, so a new one
    assert second.id != first.id
    flysim.clear_calls()
    with pytest.raises(FlyVolumeSwapRefused, match=f"volume {first.id} mounted at /data"):
        MachineProvider().create({**m_props, "config": {"image": "img:2", "mounts": [
            {"volume": second.id, "path": "/data"}]}})
    assert not [x for x in flysim.calls() if x["operation"] == "Machines_update"]
    [app] = [a for a in flysim.state()["apps"] if a["name"] == "swap-vm"]
    [live] = app["machines"]
    assert live["id"] == machine.id and live["mounts"] == [{"volume": first.id, "path": "/data"}]
    assert live["image"] == "img:1" and not live["lease_held"]
    # A rerun of the create that made it (same volume) still adopts it.
    again = MachineProvider().create({**m_props, "config": {"image": "img:1", "mounts": [
        {"volume": first.id, "path": "/data"}]}})
    assert again.id == machine.id


def test_app_create_adopts_own_app_but_not_anothers(flysim) -> None:
    c = conn(flysim)
    AppProvider().create({"name": "dup-app", "org_slug": "personal", "network": None, **c})
    adopted = AppProvider().create({"name": "dup-app", "org_slug": "personal", "network": None, **c})
    assert adopted.id == "dup-app"
    with pytest.raises(Exception, match="name_taken|taken"):
        AppProvider().create({"name": "dup-app", "org_slug": "other-org", "network": None, **c})


def test_a_machine_started_costs_at_most_three_calls(flysim) -> None:
    c = conn(flysim)
    AppProvider().create({"name": "calls-app", "org_slug": "personal", **c})
    flysim.clear_calls()
    MachineProvider().create({"app": "calls-app", "name": "calls-0", "region": "syd", "config": {"image": "img:1"}, **c})
    assert [x["operation"] for x in flysim.calls()] == ["Machines_create", "Machines_wait"]


def test_a_machine_that_crashes_on_boot_is_reported_as_crashed(flysim) -> None:
    from fly import FlyMachineCrashed

    c = conn(flysim)
    AppProvider().create({"name": "crash-app", "org_slug": "personal", **c})
    flysim.add_fault(kind="crash_on_boot", app="crash-app")
    with pytest.raises(FlyMachineCrashed) as exc:
        MachineProvider().create({"app": "crash-app", "name": "crash-0", "region": "syd",
                                  "config": {"image": "img:1", "restart": {"policy": "no"}}, "wait_timeout": 120, **c})
    assert exc.value.exit_code == 1 and "crashed on boot" in str(exc.value) and "fly logs --no-tail -a crash-app --machine" in str(exc.value)


def test_a_failing_release_command_is_a_typed_error(flysim) -> None:
    from fly import FlyReleaseCommandFailed
    from fly.providers import ReleaseCommandProvider

    c = conn(flysim)
    AppProvider().create({"name": "rel-app", "org_slug": "personal", **c})
    config = {"image": "registry.fly.io/artifact-host-basic:broken-release", "restart": {"policy": "no"},
              "auto_destroy": True, "metadata": {"fly_process_group": "fly_app_release_command"}}
    with pytest.raises(FlyReleaseCommandFailed) as exc:
        ReleaseCommandProvider().create({"app": "rel-app", "region": "syd", "config": config, **c})
    assert exc.value.exit_code == 3 and "release command of app rel-app failed with exit code 3" in str(exc.value)


def _gate_props(c: dict, machine_id: str, timeout: int) -> dict:
    return {"app": "gate-app", "machine_id": machine_id, "name": "true", "command": ["true"], "timeout": timeout, **c}


def test_a_health_gate_on_a_started_machine_runs_its_check_at_once(flysim) -> None:
    from fly.providers import ExecCheckProvider

    c = conn(flysim)
    AppProvider().create({"name": "gate-app", "org_slug": "personal", **c})
    machine = MachineProvider().create({"app": "gate-app", "name": "gate-0", "region": "syd",
                                        "config": {"image": "img:1"}, **c})
    flysim.clear_calls()
    assert ExecCheckProvider().create(_gate_props(c, machine.id, 30)).outs["passed_at"]
    assert [x["operation"] for x in flysim.calls()] == ["Machines_exec"]


def test_a_health_gate_on_a_stopped_machine_waits_for_it_to_start(flysim) -> None:
    import threading

    from fly import FlyClient, FlyConnection, FlyHealthGateFailed
    from fly.providers import ExecCheckProvider

    c = conn(flysim)
    AppProvider().create({"name": "gate-app", "org_slug": "personal", **c})
    machine = MachineProvider().create({"app": "gate-app", "name": "gate-0", "region": "syd",
                                        "config": {"image": "img:1"}, **c})
    connection = FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                       environ={})
    with FlyClient(connection) as client:
        client.stop_machine("gate-app", machine.id)
        client.wait_machine("gate-app", machine.id, "stopped", timeout=10)
        # Nobody starts it: the gate fails at its timeout, saying why.
        flysim.clear_calls()
        with pytest.raises(FlyHealthGateFailed, match="not started"):
            ExecCheckProvider().create(_gate_props(c, machine.id, 2))
        assert [x["operation"] for x in flysim.calls()][:2] == ["Machines_exec", "Machines_wait"]

        # Started by someone else while the gate waits: it passes once the machine is up.
        flysim.clear_calls()
        starter = threading.Timer(0.5, client.start_machine, args=("gate-app", machine.id))
        starter.start()
        try:
            assert ExecCheckProvider().create(_gate_props(c, machine.id, 30)).outs["passed_at"]
        finally:
            starter.join()
    gate_calls = sorted((x for x in flysim.calls() if x["operation"] != "Machines_start"), key=lambda x: x["started"])
    assert [(x["operation"], x["status"]) for x in gate_calls] == [
        ("Machines_exec", 412), ("Machines_wait", 200), ("Machines_exec", 200)]


def test_an_app_under_a_former_name_keeps_it_instead_of_being_replaced(flysim) -> None:
    """Fly cannot rename an app: a stack whose host image app is `<prefix>-image-basic` (the name before the
    runbook's `<prefix>-fly-host-basic`) keeps that app, its id and its name."""
    c = conn(flysim)
    provider = AppProvider()
    made = provider.create({"name": "s1-image-basic", "org_slug": "personal", **c})
    olds = made.outs
    renamed = {"name": "s1-fly-host-basic", "former_names": ["s1-image-basic"], "org_slug": "personal", **c}
    kept = provider.diff(made.id, olds, renamed)
    assert not kept.changes and not kept.replaces
    # Without the former name it is a new app (delete before replace: names are global).
    moved = provider.diff(made.id, olds, {**renamed, "former_names": []})
    assert moved.replaces == ["name"] and moved.delete_before_replace
    # Another change still replaces it, and the new app takes the new name.
    elsewhere = provider.diff(made.id, olds, {**renamed, "org_slug": "other-org"})
    assert elsewhere.replaces == ["org_slug"]
    # A forced update records the name the app has, not the one asked for.
    assert provider.update(made.id, olds, renamed).outs["name"] == "s1-image-basic"
    # A new stack's app takes the runbook's name.
    assert provider.create(renamed).id == "s1-fly-host-basic"


def test_a_refresh_reads_back_numbers_the_engine_returns_as_floats_without_warnings(flysim) -> None:
    """The engine hands a resource's numbers back as floats (an exit code of 0 is 0.0): a refresh of a release
    command reads them as the ints they are, with no serializer warning in the user's output."""
    import warnings

    from fly.providers.machine_ops import ReleaseCommandProvider

    connection = {"fly_api": {"api_base_url": flysim.url, "flaps_base_url": flysim.url}, "fly_token": flysim.token}
    AppProvider().create({"name": "release-floats", "org_slug": "personal", **connection})
    props = {**connection, "app": "release-floats", "region": "syd", "config": {"image": "img:1"}, "timeout": 600.0,
             "machine_id": "m1", "exit_code": 0.0, "finished_at": "2026-12-04T00:00:00Z"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = ReleaseCommandProvider().read("m1", props)
    assert read.outs["exit_code"] == 0 and isinstance(read.outs["exit_code"], int)
