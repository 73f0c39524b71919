"""Fixtures for flysim's own tests: a real server on loopback, zero latency."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flysim.testing import FlysimServer  # noqa: E402


@pytest.fixture(scope="session")
def _shared_fly() -> Iterator[FlysimServer]:
    with FlysimServer(orgs=["personal", "acme"], rate_limit=False) as server:
        yield server


@pytest.fixture
def fly(_shared_fly: FlysimServer) -> FlysimServer:
    """One server for the session, wiped before each test (starting one costs ~0.2 s)."""
    _shared_fly.reset()
    return _shared_fly


@pytest.fixture
def client(fly: FlysimServer) -> Iterator[httpx.Client]:
    with fly.client() as c:
        yield c


@pytest.fixture
def app_name(client: httpx.Client) -> str:
    r = client.post("/v1/apps", json={"app_name": "slice-app", "org_slug": "personal"})
    assert r.status_code == 201, r.text
    return "slice-app"
