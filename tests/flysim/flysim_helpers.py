"""Shared helpers for flysim tests (not a conftest: plain module, unique name)."""

from __future__ import annotations

import httpx


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
