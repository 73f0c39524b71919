"""Fixtures of the self-hosted deploy tests: credentials that are unique per test (so finding one
anywhere is proof of a leak), the engine with temp files kept in the test's own directory (so a scan
sees everything a job wrote), and the wizard on a free port."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from selfhosted_helpers import WizardServer


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The job runner's state (locks, job directories) of this test alone, for it and its subprocesses."""
    path = tmp_path / "state"
    monkeypatch.setenv("ARTIFACT_STATE_DIR", str(path))
    return path


@pytest.fixture
def creds() -> dict[str, str]:
    """The form's credentials, random per test."""
    return {
        "anthropic_api_key": f"sk-ant-api03-{secrets.token_urlsafe(32)}",
        "twilio_account_sid": "AC" + secrets.token_hex(16),
        "twilio_auth_token": secrets.token_hex(16),
        "twilio_whatsapp_number": "+14155238886",
    }


@pytest.fixture
def job_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where this process's temp files go (the jobs' directories, the Automation API's event logs)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setenv("TMPDIR", str(root))
    yield root


@pytest.fixture
def engine(pulumi_bin: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real engine, found the way the runner finds it."""
    monkeypatch.setenv("ARTIFACT_PULUMI_BIN", str(pulumi_bin))
    return pulumi_bin


@pytest.fixture
def wizard(flysim: Any, engine: Path) -> Iterator[WizardServer]:
    from selfhosted.target import flysim_target

    with WizardServer(flysim_target(flysim.url), health_timeout=30) as server:
        yield server
