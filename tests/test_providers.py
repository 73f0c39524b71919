"""The dynamic providers' check/diff/create/read/update/delete against flysim over real HTTP."""

from __future__ import annotations

import pytest

from fly.providers import AppProvider, MachineProvider, VolumeProvider
from fly.providers.base import UNKNOWN


def conn(flysim) -> dict:
    return {"fly_api": {"api_base_url": flysim.url, "flaps_base_url": flysim.url}, "fly_token": flysim.token}


def test_check_reports_bad_inputs_by_property() -> None:
    result = AppProvider().check({}, {"name": "Bad_Name", "org_slug": "personal"})
    assert [f.property for f in result.failures] == ["name"]
    assert "app input name" in result.failures[0].reason


def test_check_tolerates_unknowns_during_preview() -> None:
    result = MachineProvider().check({}, {"app": UNKNOWN, "name": "m", "region": "syd", "config": UNKNOWN})
    assert result.failures == []


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
    assert image.changes is True and image.replaces == []
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

    # Creating the same machine again (a rerun after a crash) adopts it instead of duplicating.
    again = MachineProvider().create(m_props)
    assert again.id == machine.id
    assert len([m for a in flysim.state()["apps"] for m in a["machines"] if m["state"] != "destroyed"]) == 1

    MachineProvider().delete(machine.id, updated.outs)
    assert MachineProvider().read(machine.id, updated.outs).id == ""
    VolumeProvider().delete(vol.id, grown.outs)
    AppProvider().delete(app.id, app.outs)
    assert AppProvider().read(app.id, app.outs).id == ""


def test_app_create_adopts_own_app_but_not_anothers(flysim) -> None:
    c = conn(flysim)
    AppProvider().create({"name": "dup-app", "org_slug": "personal", "network": None, **c})
    adopted = AppProvider().create({"name": "dup-app", "org_slug": "personal", "network": None, **c})
    assert adopted.id == "dup-app"
    with pytest.raises(Exception, match="name_taken|taken"):
        AppProvider().create({"name": "dup-app", "org_slug": "other-org", "network": None, **c})
