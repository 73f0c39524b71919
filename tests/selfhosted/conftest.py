"""Fixtures of the self-hosted deploy tests: credentials that are unique per test (so finding one
anywhere is proof of a leak), a scan of files for them, and the engine with temp files kept in the
test's own directory (so the scan sees everything a job wrote)."""

from __future__ import annotations

import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

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


class WizardServer:
    """The wizard app on a free loopback port, in a thread of the test process."""

    def __init__(self, target: Any, **options: Any) -> None:
        from selfhosted.web import create_app

        self.app = create_app(target, **options)
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "WizardServer":
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the wizard did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@pytest.fixture
def wizard(flysim: Any, engine: Path) -> Iterator[WizardServer]:
    from selfhosted.target import flysim_target

    with WizardServer(flysim_target(flysim.url), health_timeout=30) as server:
        yield server
