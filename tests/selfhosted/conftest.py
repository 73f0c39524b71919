"""Fixtures of the self-hosted deploy tests: credentials that are unique per test (so finding one
anywhere is proof of a leak), a scan of files for them, and the engine with temp files kept in the
test's own directory (so the scan sees everything a job wrote)."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture
def creds() -> dict[str, str]:
    """The form's credentials, random per test."""
    return {
        "anthropic_api_key": f"sk-ant-api03-{secrets.token_urlsafe(32)}",
        "twilio_account_sid": "AC" + secrets.token_hex(16),
        "twilio_auth_token": secrets.token_hex(16),
        "twilio_whatsapp_number": "+14155238886",
    }


def secret_values(creds: dict[str, str], fly_token: str) -> dict[str, str]:
    values = {k: v for k, v in creds.items() if k != "twilio_whatsapp_number"}
    values["fly_token"] = fly_token
    return values


def scan(values: dict[str, str], *roots: Path) -> list[str]:
    """Every file under ``roots`` that holds one of ``values`` (as text, any encoding-neutral bytes)."""
    hits = []
    needles = {name: value.encode() for name, value in values.items()}
    for root in roots:
        if not root.exists():
            continue
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        for path in files:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits.extend(f"{path}: {name}" for name, needle in needles.items() if needle in data)
    return hits


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
