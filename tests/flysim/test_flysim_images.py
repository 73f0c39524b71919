"""The image catalogue: image_ref digests, scripted exec, release machines; org token scope."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from flysim.images import Catalogue
from flysim.latency import LatencyProfile
from flysim.testing import FlysimServer
from flysim_helpers import ROOT, make_machine, make_volume, org_token, run_cli

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
NFS = "registry.fly.io/artifact-fly-nfs"
BASIC = "registry.fly.io/artifact-host-basic"
CODER = "registry.fly.io/artifact-host-coder"
CHECK = "/fly-nfs/scripts/self-mount-check.sh"


def exec_(c: httpx.Client, app: str, mid: str, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post(f"/v1/apps/{app}/machines/{mid}/exec", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def nfs_server(c: httpx.Client, prefix: str = "s1", image: str = NFS + ":2026.11.1", org: str = "personal",
               mount: bool = True) -> dict[str, Any]:
    """`<prefix>-nfs` as the product deploys it: volume `nfsdata` mounted at /data."""
    assert c.post("/v1/apps", json={"app_name": f"{prefix}-nfs", "org_slug": org}).status_code == 201
    config: dict[str, Any] = {"image": image}
    if mount:
        vol = make_volume(c, f"{prefix}-nfs", name="nfsdata")
        config["mounts"] = [{"volume": vol["id"], "path": "/data"}]
    return make_machine(c, f"{prefix}-nfs", config=config)


def release_config(image: str, cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """What flyctl's ToReleaseMachineConfig builds for `[deploy] release_command`."""
    return {
        "image": image,
        "init": {"cmd": cmd},
        "restart": {"policy": "no"},
        "auto_destroy": True,
        "dns": {"skip_registration": True},
        "metadata": {"fly_platform_version": "v2", "fly_process_group": "fly_app_release_command"},
        "env": {"RELEASE_COMMAND": "1", "FLY_PROCESS_GROUP": "fly_app_release_command", **env},
    }


def run_release(c: httpx.Client, app: str, image: str, name: str, dc_nfs: str = "s1-nfs",
                org: str = "personal") -> dict[str, Any]:
    if c.get(f"/v1/apps/{app}").status_code == 404:
        assert c.post("/v1/apps", json={"app_name": app, "org_slug": org}).status_code == 201
    cfg = release_config(image, ["/usr/local/bin/publish-image-manifest", name], {"DC_NFS": dc_nfs})
    r = c.post(f"/v1/apps/{app}/machines", json={"region": "ams", "config": cfg})
    assert r.status_code == 200, r.text
    return r.json()


def exit_code(events: list[dict[str, Any]]) -> int | None:
    """fly-go: the newest `exit` event after the newest `start` (events come newest first)."""
    start = next(i for i, e in enumerate(events) if e["type"] == "start")
    ev = next((e for e in events[:start] if e["type"] == "exit"), None)
    return None if ev is None else ev["request"]["exit_event"]["exit_code"]


# -- image_ref -------------------------------------------------------------------------------
def test_image_ref_digest_follows_the_reference(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, config={"image": "registry.fly.io/artifact-fly-router:2026.11.1"})
    ref = m["image_ref"]
    assert ref["registry"] == "registry.fly.io" and ref["repository"] == "artifact-fly-router"
    assert ref["tag"] == "2026.11.1" and DIGEST.fullmatch(ref["digest"])
    M = f"/v1/apps/{app_name}/machines/{m['id']}"
    client.post(M, json={"config": {**m["config"], "image": "registry.fly.io/artifact-fly-router:2026.11.2"}})
    new = client.get(M).json()
    assert new["image_ref"]["tag"] == "2026.11.2" and DIGEST.fullmatch(new["image_ref"]["digest"])
    assert new["image_ref"]["digest"] != ref["digest"]
    # The same reference always gives the same digest; an older version keeps its own.
    again = make_machine(client, app_name, config={"image": "registry.fly.io/artifact-fly-router:2026.11.1"})
    assert again["image_ref"]["digest"] == ref["digest"]
    assert client.get(M, params={"version": m["instance_id"]}).json()["image_ref"]["digest"] == ref["digest"]
    # A pinned digest is reported as is; Docker Hub names go through Fly's mirror.
    pinned = "registry.fly.io/artifact-worker:1@sha256:" + "ab" * 32
    assert make_machine(client, app_name, config={"image": pinned})["image_ref"]["digest"] == "sha256:" + "ab" * 32
    hub = make_machine(client, app_name, config={"image": "nginx"})["image_ref"]
    assert hub["registry"] == "docker-hub-mirror.fly.io" and hub["repository"] == "library/nginx"
    assert hub["tag"] == "latest" and DIGEST.fullmatch(hub["digest"])
    assert all(DIGEST.fullmatch(x["image_ref"]["digest"]) for x in client.get(f"/v1/apps/{app_name}/machines").json())


def test_catalogue_digest_and_labels() -> None:
    digest = "sha256:" + "0" * 64
    images = {"images": {"registry.fly.io/pinned": {"labels": {"fly.version": "7"}},
                         "registry.fly.io/pinned:v7": {"digest": digest}}}
    cat = Catalogue.load(images)
    assert cat.image_ref("registry.fly.io/pinned:v7") == {
        "registry": "registry.fly.io", "repository": "pinned", "tag": "v7", "digest": digest,
        "labels": {"fly.version": "7"}}
    other = cat.image_ref("registry.fly.io/pinned:v8")
    assert other["digest"] != digest and other["labels"] == {"fly.version": "7"}
    assert cat.image_ref("localhost:5000/x")["tag"] == "latest"  # a port is not a tag


# -- exec scripts ----------------------------------------------------------------------------------
def test_self_mount_check(client: httpx.Client) -> None:
    nfs = nfs_server(client)
    ok = exec_(client, "s1-nfs", nfs["id"], {"command": [CHECK]})
    assert ok == {"exit_code": 0, "stdout": "self-mount ok\n", "stderr": ""}
    assert exec_(client, "s1-nfs", nfs["id"], {"cmd": CHECK})["exit_code"] == 0
    assert exec_(client, "s1-nfs", nfs["id"], {"command": ["sh", "-c", f"{CHECK} && echo gate"]})["stdout"] == "self-mount ok\ngate\n"
    # Without the volume at /data the check fails like a mount would.
    bare = nfs_server(client, prefix="s2", mount=False)
    failed = exec_(client, "s2-nfs", bare["id"], {"command": [CHECK]})
    assert failed["exit_code"] == 1 and "mount.nfs" in failed["stderr"] and "/data" in failed["stderr"]
    # The broken build fails even with the volume mounted.
    broken = nfs_server(client, prefix="s3", image=NFS + ":broken")
    denied = exec_(client, "s3-nfs", broken["id"], {"command": [CHECK]})
    assert denied == {"exit_code": 1, "stdout": "",
                      "stderr": "mount.nfs: access denied by server while mounting 127.0.0.1:/data\n"}
    # Other commands still use the simulated shell; other images do not have the script.
    assert exec_(client, "s1-nfs", nfs["id"], {"command": ["test", "-d", "/data"]})["exit_code"] == 0
    router = make_machine(client, "s1-nfs", config={"image": "registry.fly.io/artifact-fly-router:1"})
    assert exec_(client, "s1-nfs", router["id"], {"command": [CHECK]})["exit_code"] == 127


# -- release machines --------------------------------------------------------------------------------
def test_release_writes_manifest_then_machine_is_destroyed(fly: FlysimServer, client: httpx.Client) -> None:
    nfs = nfs_server(client)
    image = BASIC + ":2026.11.1"
    m = run_release(client, "s1-image-basic", image, "basic")
    M = f"/v1/apps/s1-image-basic/machines/{m['id']}"
    r = client.get(M + "/wait", params={"state": "destroyed", "timeout": 5})
    assert r.status_code == 200 and r.json()["state"] == "destroyed"
    # It exited before anyone could wait for `started`: 404, as flyctl expects (superfly/flyctl#2059).
    assert client.get(M + "/wait", params={"state": "started", "timeout": 1}).status_code == 404
    # Still readable after destruction, so the client can read the exit code.
    shown = client.get(M)
    assert shown.status_code == 200 and shown.json()["state"] == "destroyed"
    events = client.get(M + "/events").json()
    assert [e["type"] for e in events] == ["destroy", "exit", "start", "launch"]
    assert exit_code(events) == 0
    assert events[1]["request"]["exit_event"]["requested_stop"] is False
    # The manifest is on the NFS volume, seen through the NFS machine's /data.
    out = exec_(client, "s1-nfs", nfs["id"], {"command": ["cat", "/data/computers/images/basic.json"]})
    assert out["exit_code"] == 0, out
    manifest = json.loads(out["stdout"])
    assert manifest["name"] == "basic" and manifest["image"] == image
    assert manifest["digest"] == m["image_ref"]["digest"] and DIGEST.fullmatch(manifest["digest"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["published_at"])
    (app,) = [a for a in fly.state()["apps"] if a["name"] == "s1-image-basic"]
    assert app["machines"][0]["last_run"]["exit_code"] == 0
    nfs_vol = [a for a in fly.state()["apps"] if a["name"] == "s1-nfs"][0]["volumes"][0]
    assert nfs_vol["files"] == ["/computers/images/basic.json"]
    # A new tag publishes a new digest.
    run_release(client, "s1-image-basic", BASIC + ":2026.11.2", "basic")
    again = json.loads(exec_(client, "s1-nfs", nfs["id"], {"command": ["cat", "/data/computers/images/basic.json"]})["stdout"])
    assert again["image"].endswith(":2026.11.2") and again["digest"] != manifest["digest"]


def test_failing_release_exits_3_and_writes_nothing(fly: FlysimServer, client: httpx.Client) -> None:
    nfs = nfs_server(client)
    m = run_release(client, "s1-image-basic", BASIC + ":broken-release", "basic")
    M = f"/v1/apps/s1-image-basic/machines/{m['id']}"
    assert client.get(M + "/wait", params={"state": "destroyed"}).status_code == 200
    assert exit_code(client.get(M + "/events").json()) == 3
    run = [a for a in fly.state()["apps"] if a["name"] == "s1-image-basic"][0]["machines"][0]["last_run"]
    assert run["exit_code"] == 3 and run["stderr"]
    missing = exec_(client, "s1-nfs", nfs["id"], {"command": ["cat", "/data/computers/images/basic.json"]})
    assert missing["exit_code"] == 1


def test_bad_manifest_release(client: httpx.Client) -> None:
    nfs = nfs_server(client)
    m = run_release(client, "s1-image-coder", CODER + ":bad-manifest", "coder")
    assert exit_code(client.get(f"/v1/apps/s1-image-coder/machines/{m['id']}/events").json()) == 0
    out = exec_(client, "s1-nfs", nfs["id"], {"command": ["cat", "/data/computers/images/coder.json"]})
    assert json.loads(out["stdout"]) == {"name": "coder"}


def test_release_without_reachable_nfs_fails(fly: FlysimServer, client: httpx.Client) -> None:
    def last_run(app: str) -> dict[str, Any]:
        return [a for a in fly.state()["apps"] if a["name"] == app][0]["machines"][-1]["last_run"]

    m = run_release(client, "s1-image-coder", CODER + ":1", "coder", dc_nfs="s1-nfs")  # no such app
    assert exit_code(client.get(f"/v1/apps/s1-image-coder/machines/{m['id']}/events").json()) == 1
    assert "s1-nfs" in last_run("s1-image-coder")["stderr"]
    nfs_server(client, prefix="s2", mount=False)  # the app exists, without a volume
    run_release(client, "s2-image-coder", CODER + ":1", "coder", dc_nfs="s2-nfs")
    assert last_run("s2-image-coder")["exit_code"] == 1 and "no volume" in last_run("s2-image-coder")["stderr"]
    nfs_server(client, prefix="s3", org="acme")  # another org's NFS is out of reach
    run_release(client, "s3-image-coder", CODER + ":1", "coder", dc_nfs="s3-nfs")
    assert last_run("s3-image-coder")["exit_code"] == 1


def test_host_image_machine_without_release_group_keeps_running(client: httpx.Client, app_name: str) -> None:
    m = make_machine(client, app_name, config={"image": BASIC + ":1", "env": {"DC_NFS": "s1-nfs"}})
    assert client.get(f"/v1/apps/{app_name}/machines/{m['id']}").json()["state"] == "started"
    # An uncatalogued image on a release machine still runs its command and exits 0.
    r = run_release(client, app_name, "example/unknown:1", "x")
    assert r["state"] == "destroyed"
    assert exit_code(client.get(f"/v1/apps/{app_name}/machines/{r['id']}/events").json()) == 0


def test_release_with_latency_is_observable() -> None:
    # The command "runs" for `stop` seconds: long enough to see it started, even on a slow box.
    slow_run = LatencyProfile("slow-run", request=0, create=0.01, start=0.01, stop=0.5, suspend=0, resume=0,
                              destroy=0.01, replace=0.01, volume_create=0)
    with FlysimServer(latency=slow_run, rate_limit=False) as fly, fly.client() as c:
        nfs = nfs_server(c)
        c.get(f"/v1/apps/s1-nfs/machines/{nfs['id']}/wait", params={"state": "started"})
        gone = run_release(c, "s1-image-basic", BASIC + ":3", "basic")
        # Waiting for a state it will never reach ends with 404 once it is destroyed, not a timeout.
        r = c.get(f"/v1/apps/s1-image-basic/machines/{gone['id']}/wait", params={"state": "suspended", "timeout": 5})
        assert r.status_code == 404
        m = run_release(c, "s1-image-basic", BASIC + ":3", "basic")
        assert m["state"] == "created"
        M = f"/v1/apps/s1-image-basic/machines/{m['id']}"
        assert c.get(M + "/wait", params={"state": "started", "timeout": 5}).status_code == 200
        assert c.get(M + "/wait", params={"state": "destroyed", "timeout": 5}).status_code == 200
        assert exit_code(c.get(M + "/events").json()) == 0
        assert exec_(c, "s1-nfs", nfs["id"], {"command": ["test", "-s", "/data/computers/images/basic.json"]})["exit_code"] == 0


# -- custom catalogues -------------------------------------------------------------------------------
def test_custom_catalogue_layers_over_default(tmp_path: Path) -> None:
    custom = {"images": {"example.com/tool": {"exec": {"/bin/hello": {"stdout": "hi\n", "exit_code": 4}}}}}
    with FlysimServer(images=custom, rate_limit=False) as fly, fly.client() as c:
        c.post("/v1/apps", json={"app_name": "a", "org_slug": "personal"})
        tool = make_machine(c, "a", config={"image": "example.com/tool:2"})
        assert exec_(c, "a", tool["id"], {"command": ["/bin/hello"]}) == {"exit_code": 4, "stdout": "hi\n", "stderr": ""}
        nfs = make_machine(c, "a", config={"image": NFS + ":broken"})
        assert exec_(c, "a", nfs["id"], {"command": [CHECK]})["exit_code"] == 1  # default entries remain
    only = tmp_path / "only.json"
    only.write_text(json.dumps({**custom, "extends_default": False}))
    assert Catalogue.load(str(only)).resolve(NFS + ":broken").exec == {}
    for bad in ({"images": {"x": {"exec": {"relative": {}}}}}, {"images": {"x": {"digest": "md5:1"}}},
                {"images": {"x": {"release": {"writes": [{"app_from_env": "E", "path": "../up", "content": ""}]}}}},
                {"imagez": {}}):
        with pytest.raises(ValueError, match="invalid image catalogue"):
            FlysimServer(images=bad).start()


def test_cli_images_flag(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"images": {"example.com/tool": {"exec": {"/bin/hello": {"stdout": "cli\n"}}}}}))
    with run_cli(tmp_path, "--token", "t", "--latency", "zero", "--images", str(path)) as (info, _):
        with httpx.Client(base_url=info["url"], headers={"Authorization": "Bearer t"}) as c:
            c.post("/v1/apps", json={"app_name": "a", "org_slug": "personal"})
            m = make_machine(c, "a", config={"image": "example.com/tool"})
            assert exec_(c, "a", m["id"], {"command": ["/bin/hello"]})["stdout"] == "cli\n"
    path.write_text("{not json")
    done = subprocess.run([sys.executable, "-m", "flysim", "--port", "0", "--images", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "image catalogue" in done.stderr


# -- org token scope ---------------------------------------------------------------------------------------
def test_org_token_runs_a_control_plane_in_its_org_only(fly: FlysimServer, client: httpx.Client) -> None:
    """A deploy_organization token can do what a slice deployment does, in its org and nowhere else."""
    client.post("/v1/apps", json={"app_name": "personal-app", "org_slug": "personal"})
    outside = make_machine(client, "personal-app")
    tok = org_token(client, "acme")
    with fly.client(headers={"Authorization": tok["tokenHeader"]}) as oc:
        nfs = nfs_server(oc, prefix="acme1", org="acme")
        assert [m["id"] for m in oc.get("/v1/apps/acme1-nfs/machines").json()] == [nfs["id"]]
        assert oc.get("/v1/orgs/acme/machines").status_code == 200
        ip = oc.post("/v1/apps/acme1-nfs/ip_assignments", json={"type": "private_v6", "network": "n"})
        assert ip.status_code in (200, 201), ip.text
        assert [i["ip"] for i in oc.get("/v1/apps/acme1-nfs/ip_assignments").json()["ips"]] == [ip.json()["ip"]]
        assert oc.post("/v1/apps/acme1-nfs/secrets", json={"values": {"K": "v"}}).status_code == 200
        assert exec_(oc, "acme1-nfs", nfs["id"], {"command": [CHECK]})["exit_code"] == 0
        release = run_release(oc, "acme1-image-basic", BASIC + ":1", "basic", dc_nfs="acme1-nfs", org="acme")
        assert exit_code(oc.get(f"/v1/apps/acme1-image-basic/machines/{release['id']}/events").json()) == 0
        oc.post("/v1/apps", json={"app_name": "acme1-worker-pool", "org_slug": "acme"})
        assert oc.delete("/v1/apps/acme1-worker-pool").status_code == 202
        # Nothing in another org: same answer whether the target exists or not.
        P = f"/v1/apps/personal-app/machines/{outside['id']}"
        denied = [
            oc.post("/v1/apps", json={"app_name": "sneaky", "org_slug": "personal"}),
            oc.get("/v1/apps/personal-app"),
            oc.get("/v1/apps/personal-app/machines"),
            oc.post("/v1/apps/personal-app/machines", json={"config": {"image": "x"}}),
            oc.post(P + "/exec", json={"command": ["true"]}),
            oc.get("/v1/apps/personal-app/ip_assignments"),
            oc.post("/v1/apps/personal-app/ip_assignments", json={"type": "v6"}),
            oc.get("/v1/orgs/personal/machines"),
            oc.delete("/v1/apps/personal-app"),
        ]
        assert [r.status_code for r in denied] == [401] * len(denied)
    assert client.get(f"/v1/apps/personal-app/machines/{outside['id']}").json()["state"] == "started"
