"""The Fly provider layer through the real engine: previews with values the engine does not know yet, a
change of each setting as preview then up, and type names. Asserts on what the user sees (preview and
error text) and on flysim's state and call log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pulumi import automation as auto

from .harness import SliceStack, make_stack

pytestmark = pytest.mark.e2e

UNTYPED = "pulumi-python:dynamic:Resource"


def _app(flysim, name: str) -> dict:
    return next(a for a in flysim.state()["apps"] if a["name"] == name)


def _live(machines: list[dict]) -> list[dict]:
    return [m for m in machines if m["state"] != "destroyed"]


def _planned(result: auto.PreviewResult) -> dict[str, str]:
    """Resource name -> planned operation, read from the preview's diff text as a user reads it."""
    planned: dict[str, str] = {}
    lines = [line.strip() for line in result.stdout.splitlines()]
    for i, step in enumerate(lines):
        op = re.match(r"^[-+~ ]*[\w/:.-]+: \(([a-z-]+)\)", step)
        urn = next((x for x in lines[i + 1:i + 4] if x.startswith("[urn=")), None) if op else None
        if op and urn:
            planned[urn.rstrip("]").rsplit("::", 1)[-1]] = op.group(1)
    return planned


def _set(s: SliceStack, key: str, value: str, secret: bool = False) -> None:
    s.stack.set_config(f"artifact-slice:{key}", auto.ConfigValue(value, secret=secret))


def test_preview_works_on_a_new_stack_and_after_every_change(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   config={"artifact-slice:protectVolumes": "true"},
                   secret_config={"artifact-slice:clerkSecretKey": "sk_sim_first_0123456789",
                                  "artifact-slice:clerkPublishableKey": "pk_sim_0123456789"})
    prefix = s.stack.name

    # A new stack: the org id, volume id and secrets version are unknown, and the preview still works,
    # showing every resource to create by its own type, and calls no API.
    flysim.clear_calls()
    preview = s.preview()
    assert set(preview.change_summary) == {"create"}, _planned(preview)
    assert flysim.calls() == []
    assert UNTYPED not in preview.stdout
    for kind in ("App", "Volume", "Machine", "OrgToken", "AppSecrets", "ExecCheck", "MachineSweeper"):
        assert f"pulumi-python:dynamic/fly:{kind}" in preview.stdout, kind
    assert s.up().summary.result == "succeeded"
    nfs = _app(flysim, f"{prefix}-nfs")
    [volume] = nfs["volumes"]
    router = _app(flysim, f"{prefix}-fly-router")
    [router_machine] = _live(router["machines"])
    secrets_version = router["secrets"]["version"]

    # Clerk rotation and a bigger volume: preview shows updates (no replace), up applies them in place and
    # the router machine gets the new secrets version.
    _set(s, "clerkSecretKey", "sk_sim_second_9876543210", secret=True)
    _set(s, "nfsVolumeSizeGb", "2")
    preview = s.preview()
    assert preview.change_summary.get("update", 0) >= 3 and "replace" not in preview.change_summary, _planned(preview)
    planned = _planned(preview)
    assert {k: planned.get(k) for k in ("router-secrets", "router-machine", "nfs-volume")} == dict.fromkeys(
        ("router-secrets", "router-machine", "nfs-volume"), "update"), planned
    assert "nfs-machine" not in planned, planned  # growing the volume is the volume's change alone
    flysim.clear_calls()
    assert s.up().summary.result == "succeeded"
    nfs, router = _app(flysim, f"{prefix}-nfs"), _app(flysim, f"{prefix}-fly-router")
    assert [(v["id"], v["size_gb"]) for v in nfs["volumes"]] == [(volume["id"], 2)]
    assert router["secrets"]["version"] > secrets_version
    [machine] = _live(router["machines"])
    assert machine["id"] == router_machine["id"] and machine["instance_id"] != router_machine["instance_id"]
    assert not any(c["operation"] in ("Machines_create", "Machines_delete", "Volumes_create", "Volume_delete")
                   for c in flysim.calls())

    # Nothing changed: nothing planned, no call.
    flysim.clear_calls()
    assert set(s.preview().change_summary) == {"same"}
    assert [c for c in flysim.calls() if c["mutating"]] == []

    # Another org: refused, saying how to move.
    _set(s, "org", "other-org")
    with pytest.raises(auto.errors.CommandError) as refused:
        s.preview()
    assert "cannot move to 'other-org' in place" in str(refused.value) and "pulumi destroy" in str(refused.value)
    _set(s, "org", "personal")

    # Another region with the volume protected: refused, saying what to do.
    _set(s, "primaryRegion", "ams")
    with pytest.raises(auto.errors.CommandError) as refused:
        s.preview()
    message = str(refused.value)
    assert "region 'syd' -> 'ams' needs a new, empty volume" in message
    assert "pulumi config set artifact-slice:protectVolumes false" in message
    assert [v["id"] for v in _app(flysim, f"{prefix}-nfs")["volumes"]] == [volume["id"]]

    # Unprotected, the NFS machine and its volume move: one volume left, in the new region.
    _set(s, "primaryRegion", "syd")
    _set(s, "protectVolumes", "false")
    assert s.up().summary.result == "succeeded"
    _set(s, "primaryRegion", "ams")
    preview = s.preview()
    assert preview.change_summary.get("replace", 0) >= 2, _planned(preview)
    assert s.up().summary.result == "succeeded"
    nfs = _app(flysim, f"{prefix}-nfs")
    [moved] = nfs["volumes"]
    assert moved["region"] == "ams" and moved["id"] != volume["id"] and moved["size_gb"] == 2
    [nfs_machine] = _live(nfs["machines"])
    assert nfs_machine["region"] == "ams" and nfs_machine["mounts"][0]["volume"] == moved["id"]
    assert set(s.preview().change_summary) == {"same"}

    s.destroy()
    assert not [a for a in flysim.state()["apps"] if a["name"].startswith(prefix + "-")]


def test_refresh_then_up_repairs_drift(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   config={"artifact-slice:validateInUp": "false"},
                   secret_config={"artifact-slice:clerkSecretKey": "sk_sim_0123456789abcdef"})
    prefix = s.stack.name
    # Rate-limited app creates: the user is told what the run waits for.
    flysim.add_fault(kind="status", status=429, retry_after=1, operation="Apps_create", count=2)
    assert s.up().summary.result == "succeeded"
    assert "waiting for Fly's app-create rate limit" in "".join(s.events)

    router, nfs = f"{prefix}-fly-router", f"{prefix}-nfs"
    [router_machine] = _live(_app(flysim, router)["machines"])
    [exec_machine] = _live(_app(flysim, f"{prefix}-fly-exec")["machines"])
    [flycast] = [ip["ip"] for ip in _app(flysim, nfs)["ip_assignments"] if ip["ip"].startswith("fdaa:")]
    with flysim.client() as fly:  # changed outside Pulumi
        assert fly.post(f"/v1/apps/{router}/machines/{router_machine['id']}/stop").status_code < 300
        assert fly.post(f"/v1/apps/{router}/secrets", json={"values": {"CLERK_SECRET_KEY": None}}).status_code < 300
        assert fly.delete(f"/v1/apps/{prefix}-fly-exec/machines/{exec_machine['id']}",
                          params={"force": "true"}).status_code < 300
        assert fly.delete(f"/v1/apps/{nfs}/ip_assignments/{flycast}").status_code < 300

    s.refresh()
    assert s.up().summary.result == "succeeded"
    router_app = _app(flysim, router)
    assert [m["state"] for m in _live(router_app["machines"])] == ["started"]
    assert router_app["secrets"]["names"] == ["CLERK_SECRET_KEY"]
    assert [m["state"] for m in _live(_app(flysim, f"{prefix}-fly-exec")["machines"])] == ["started"]
    assert [ip for ip in _app(flysim, nfs)["ip_assignments"] if ip["ip"].startswith("fdaa:")]
    assert set(s.preview().change_summary) == {"same"}
    s.destroy()


def test_an_nfs_image_without_the_check_script_fails_at_once(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   config={"artifact-slice:nfsImage": "registry.fly.io/some-other-image:1",
                           "artifact-slice:validateInUp": "false"})
    prefix = s.stack.name
    with pytest.raises(auto.errors.CommandError) as failed:
        s.up()
    message = str(failed.value)
    assert "health gate 'self-mount' failed" in message
    assert "exited 127: /fly-nfs/scripts/self-mount-check.sh does not exist in the image" in message
    assert "for 180s" not in message  # it did not wait out the gate's timeout
    assert not _live(_app(flysim, f"{prefix}-fly-router")["machines"]) if any(
        a["name"] == f"{prefix}-fly-router" for a in flysim.state()["apps"]) else True
    s.destroy()
