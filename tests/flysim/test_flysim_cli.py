"""The `python -m flysim` entry point, as a real subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from flysim_helpers import run_cli


def test_cli_serves_and_persists_state(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    args = ("--token", "tok-1", "--org", "personal", "--org", "acme", "--state-file", str(state_file), "--latency", "zero")
    with run_cli(tmp_path, *args) as (info, proc):
        assert info["pid"] == proc.pid
        url = info["url"]
        h = {"Authorization": "Bearer tok-1"}
        assert httpx.post(url + "/v1/apps", json={"app_name": "keep", "org_slug": "acme"}, headers=h).status_code == 201
        vol = httpx.post(url + "/v1/apps/keep/volumes", json={"name": "d", "region": "ams", "size_gb": 1}, headers=h).json()
        m = httpx.post(
            url + "/v1/apps/keep/machines",
            json={"region": "ams", "config": {"image": "x", "mounts": [{"volume": vol["id"], "path": "/d"}]}},
            headers=h,
        ).json()
        r = httpx.post(url + f"/v1/apps/keep/machines/{m['id']}/exec", json={"command": ["sh", "-c", "echo hello > /d/f"]}, headers=h)
        assert r.json()["exit_code"] == 0
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert "flysim listening on http://127.0.0.1:" in out
    assert "tok-1" not in out
    saved = json.loads(state_file.read_text())
    assert "tok-1" not in state_file.read_text()
    assert "keep" in saved["apps"]
    # Restart on the same state file: everything is still there.
    with run_cli(tmp_path, *args) as (info, _):
        h = {"FlyV1": "x"}
        h = {"Authorization": "FlyV1 tok-1"}
        got = httpx.get(info["url"] + f"/v1/apps/keep/machines/{m['id']}", headers=h).json()
        assert got["state"] == "started" and got["id"] == m["id"]
        assert httpx.get(info["url"] + "/v1/apps/keep/volumes", headers=h).json()[0]["attached_machine_id"] == m["id"]
        r = httpx.post(info["url"] + f"/v1/apps/keep/machines/{m['id']}/exec", json={"command": ["cat", "/d/f"]}, headers=h)
        assert r.json()["stdout"] == "hello\n"


def test_cli_generates_and_prints_a_token_when_none_given(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLYSIM_TOKEN"}
    with run_cli(tmp_path, env=env) as (info, proc):
        pass
    assert proc.stdout is not None
    lines = proc.stdout.read().splitlines()
    token = next(line.split(": ", 1)[1] for line in lines if line.startswith("flysim token: "))
    assert len(token) >= 20


def test_cli_token_from_env(tmp_path: Path) -> None:
    with run_cli(tmp_path, env={"FLYSIM_TOKEN": "from-env"}) as (info, _):
        r = httpx.get(info["url"] + "/v1/apps?org_slug=personal", headers={"Authorization": "Bearer from-env"})
        assert r.status_code == 200
