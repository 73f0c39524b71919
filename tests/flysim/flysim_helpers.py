"""Shared helpers for flysim tests (not a conftest: plain module, unique name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def make_machine(client: httpx.Client, app: str, **overrides: object) -> dict:
    body: dict = {"region": "ams", "config": {"image": "nginx:1.25"}}
    body.update(overrides)
    r = client.post(f"/v1/apps/{app}/machines", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def make_volume(client: httpx.Client, app: str, name: str = "data", region: str = "ams", size_gb: int = 1) -> dict:
    r = client.post(f"/v1/apps/{app}/volumes", json={"name": name, "region": region, "size_gb": size_gb})
    assert r.status_code == 200, r.text
    return r.json()


def gql(c: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    r = c.post("/graphql", json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    return r.json()


ORG_ID = "query($slug: String) { organization(slug: $slug) { id slug name type internalNumericId } }"
CREATE_TOKEN = """mutation($input: CreateLimitedAccessTokenInput!) {
  createLimitedAccessToken(input: $input) { limitedAccessToken { id name expiresAt token tokenHeader profile } }
}"""
DELETE_TOKEN = """mutation($input: DeleteLimitedAccessTokenInput!) {
  deleteLimitedAccessToken(input: $input) { token revokedBy }
}"""


def org_token(c: httpx.Client, slug: str, expiry: str | None = None) -> dict[str, Any]:
    org_id = gql(c, ORG_ID, slug=slug)["data"]["organization"]["id"]
    inp = {"name": f"{slug}-deployer", "organizationId": org_id, "profile": "deploy_organization"}
    if expiry:
        inp["expiry"] = expiry
    out = gql(c, CREATE_TOKEN, input=inp)
    assert "errors" not in out, out
    return out["data"]["createLimitedAccessToken"]["limitedAccessToken"]


@contextmanager
def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[dict, subprocess.Popen]]:
    ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flysim", "--port", "0", "--ready-file", str(ready), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "flysim did not become ready"
            time.sleep(0.02)
        yield json.loads(ready.read_text()), proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
