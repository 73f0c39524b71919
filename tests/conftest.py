"""Shared fixtures: a flysim on loopback, the real Pulumi engine, and a real PostgreSQL server with the
team backend docs/team-backend.md sets up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from flysim.testing import FlysimServer

from tests.pgserver import PostgresServer, TeamBackend, set_up_team_backend

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _session_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """enginejob's state (locks, job and private directories) of every server, CLI and job the tests start:
    never the user's own state directory."""
    path = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARTIFACT_STATE_DIR", str(path))
        yield path


@pytest.fixture
def flysim() -> Iterator[FlysimServer]:
    """A fresh simulator per test, latency zero, rate limits as on Fly."""
    with FlysimServer(orgs=["personal", "other-org"]) as server:
        yield server


@pytest.fixture(scope="session")
def pulumi_bin() -> Path:
    """The engine the bootstrap built. Missing is a failure, never a skip: the e2e tests are the
    product's proof and must not pass vacuously."""
    candidates = [os.environ.get("ARTIFACT_PULUMI_BIN", "")]
    found = shutil.which("pulumi")
    if found:
        candidates.append(str(Path(found).parent))
    for directory in candidates:
        if directory and (Path(directory) / "pulumi").is_file() and (Path(directory) / "pulumi-language-python").is_file():
            return Path(directory)
    pytest.fail("the Pulumi engine is missing: run scripts/setup.sh (or scripts/test), which builds it")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the session's own (tests/pgserver.py), stopped and removed at the end."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def team_backend(postgres: PostgresServer, pulumi_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> TeamBackend:
    """The database, schema and least-privileged role of docs/team-backend.md, made by the page's own commands."""
    env = {**os.environ, "PATH": f"{pulumi_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    return set_up_team_backend(postgres, tmp_path_factory.mktemp("team-login-home"), env)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e runs the real engine: mark it, so `-m e2e` selects exactly those."""
    e2e_dir = REPO / "tests" / "e2e"
    for item in items:
        if e2e_dir in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
