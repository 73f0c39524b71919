"""Run flysim in-process for tests.

    with FlysimServer() as fly:
        httpx.get(fly.url + "/v1/apps?org_slug=personal", headers=fly.headers)

or as a pytest fixture:

    @pytest.fixture
    def fly():
        with FlysimServer(orgs=["personal", "acme"]) as server:
            yield server
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx
import uvicorn

from .app import create_app
from .cli import bind
from .latency import LatencyProfile
from .sim import Sim, SimConfig


class FlysimServer:
    def __init__(
        self,
        *,
        token: str | None = None,
        orgs: list[str] | None = None,
        latency: str | LatencyProfile = "zero",
        state_file: str | None = None,
        rate_limit: bool = True,
        fault_seed: int | None = None,
        images: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.config = SimConfig(
            token=self.token,
            orgs=list(orgs or ["personal"]),
            latency=latency,
            state_file=state_file,
            rate_limit=rate_limit,
            fault_seed=fault_seed,
            images=images,
        )
        self.url = ""
        self.sim: Sim | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> FlysimServer:
        self.sim = Sim(self.config)
        app = create_app(sim=self.sim)
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="flysim", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("flysim failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FlysimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------
    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client for the API, authenticated with the server token by default."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 70), **kwargs)

    def _admin(self, method: str, path: str, json: Any = None) -> Any:
        r = httpx.request(method, self.url + "/__flysim" + path, json=json, timeout=10)
        r.raise_for_status()
        return r.json()

    def state(self) -> dict[str, Any]:
        return self._admin("GET", "/state")

    def calls(self) -> list[dict[str, Any]]:
        return self._admin("GET", "/calls")

    def clear_calls(self) -> None:
        self._admin("DELETE", "/calls")

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        return self._admin("POST", "/faults", json=spec)

    def faults(self) -> list[dict[str, Any]]:
        return self._admin("GET", "/faults")

    def remove_fault(self, fault_id: str) -> None:
        self._admin("DELETE", f"/faults/{fault_id}")

    def clear_faults(self) -> None:
        self._admin("DELETE", "/faults")

    def set_check(self, app: str, machine: str, name: str, status: str, output: str = "") -> None:
        self._admin("POST", "/checks", json={"app": app, "machine": machine, "name": name, "status": status, "output": output})

    def reset(self) -> None:
        """Back to a fresh world (seeded orgs only) without restarting the server."""
        self._admin("POST", "/reset")

    def reset_rate_limits(self) -> None:
        self._admin("DELETE", "/rate_limits")
