"""Helpers of the self-hosted deploy tests (a module of its own name: `conftest` is ambiguous when
several test directories run together)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any


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
