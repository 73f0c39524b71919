"""A slice built directly in flysim, as `pulumi up` leaves it (apps, machines, volume, Flycast
addresses, an org token), and its manifest in the shape of the stack outputs: the control plane's
tests need the slice, not the engine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import Implementation

from fly import FlyClient, FlyConnection
from fly.appconfig import load_fly_toml, machine_config
from flysim.testing import FlysimServer

REPO = Path(__file__).resolve().parents[2]
ROLES = {"nfs": "nfs", "router": "fly-router", "exec": "fly-exec", "worker_pool": "worker-pool",
         "image_basic": "image-basic", "image_coder": "image-coder"}
SERVING = ("nfs", "router", "exec")


@dataclass
class SliceWorld:
    flysim: FlysimServer
    prefix: str
    org: str
    manifest: dict[str, Any]
    token: str  # the slice's org token (deploy_organization)
    token_id: str

    def admin(self) -> FlyClient:
        """A client with flysim's all-powerful token: to arrange the world, never the control plane's."""
        return FlyClient(FlyConnection.resolve(token=self.flysim.token, api_base_url=self.flysim.url,
                                               flaps_base_url=self.flysim.url, environ={}))

    def new_token(self) -> tuple[str, str]:
        """Another org token of the slice's org: (value, id)."""
        with self.admin() as fly:
            token = fly.create_org_token(self.manifest["org"]["id"], f"{self.prefix}-extra")
        self.flysim.clear_calls()
        return token["token"], token["id"]

    def mutations(self) -> list[str]:
        return [f"{c['method']} {c['path']}" for c in self.flysim.calls() if c["mutating"]]


def build_slice(flysim: FlysimServer, prefix: str = "s1", org: str = "personal", region: str = "syd") -> SliceWorld:
    template = machine_config(load_fly_toml(REPO / "deploy" / "fly.worker-pool.toml"),
                              image="registry.fly.io/artifact-worker:2026.11.1", env={"PRIMARY_REGION": region})
    apps: dict[str, Any] = {}
    with FlyClient(FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                         environ={})) as fly:
        for role, suffix in ROLES.items():
            name = f"{prefix}-{suffix}"
            app = fly.create_app(name, org)
            flycast = fly.assign_ip(name, "private_v6", org_slug=org)
            entry: dict[str, Any] = {"name": name, "id": app.id, "region": region, "flycast": flycast.ip,
                                     "image": f"registry.fly.io/artifact-{suffix}:2026.11.1", "machines": []}
            if role in SERVING:
                config: dict[str, Any] = {"image": entry["image"], "guest": {"cpu_kind": "shared", "cpus": 1,
                                                                             "memory_mb": 256}}
                if role == "nfs":
                    volume = fly.create_volume(name, name="nfsdata", region=region, size_gb=1)
                    config["mounts"] = [{"volume": volume.id, "path": "/data"}]
                    entry["volumes"] = [{"id": volume.id, "name": "nfsdata", "zone": volume.zone, "size_gb": 1}]
                machine = fly.create_machine(name, config, region=region)
                fly.wait_machine(name, machine.id, "started", instance_id=machine.instance_id)
                entry["machines"] = [{"id": machine.id, "state": "started", "updated_at": machine.updated_at}]
            if role == "worker_pool":
                entry["image"] = template["image"]
                entry["machine_template"] = template
            apps[role] = entry
        org_id = fly.get_organization(org).id
        token = fly.create_org_token(org_id, f"{prefix}-control-plane")
    manifest = {"slice": prefix, "org": {"slug": org, "id": org_id, "name": org},
                "token": {"id": token["id"], "name": token["name"], "expires_at": token.get("expiresAt"),
                          "profile": "deploy_organization"},
                "apps": apps, "fly": {"api_base_url": flysim.url, "flaps_base_url": flysim.url}}
    flysim.clear_calls()
    return SliceWorld(flysim=flysim, prefix=prefix, org=org, manifest=manifest, token=token["token"],
                      token_id=token["id"])


@contextmanager
def shared_world() -> Iterator[SliceWorld]:
    """One simulator and slice for a test module (building a slice costs seconds under Fly's rate
    limits); tests leave it as they found it."""
    with FlysimServer(orgs=["personal", "other-org"]) as server:
        yield build_slice(server)


# The bearer token the tests' HTTP servers are configured with (by file, under this id).
HTTP_TOKEN_ID = "ci-agent"
HTTP_TOKEN = "cptest-" + "0123456789abcdef" * 3
CLIENT_INFO = Implementation(name="test-agent", version="1.0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_server(manifest_file: Path, token: str, tmp_path: Path, *flags: str, auth: bool = True,
                port: int | None = None) -> Iterator[int]:
    """`python -m controlplane serve --http` in its own process, configured with HTTP_TOKEN (``auth``),
    until the block ends; yields its port. stderr goes to tmp_path/server.log, the audit log to
    tmp_path/audit.jsonl."""
    port = port or free_port()
    args = [sys.executable, "-m", "controlplane", "serve", "--http", "--port", str(port),
            "--manifest", str(manifest_file), "--audit-log", str(tmp_path / "audit.jsonl"), *flags]
    if auth:
        token_file = tmp_path / "http-tokens"
        token_file.write_text(f"{HTTP_TOKEN_ID} {HTTP_TOKEN}\n")
        token_file.chmod(0o600)
        args += ["--auth-token-file", str(token_file)]
    env = {"FLY_ORG_TOKEN": token, "PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "")}
    with (tmp_path / "server.log").open("a") as log:
        process = subprocess.Popen(args, env=env, cwd=str(REPO), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "the HTTP server did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@asynccontextmanager
async def http_client(port: int, bearer: str | None = HTTP_TOKEN, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP, sending ``bearer`` as its token; ``mode="legacy"`` speaks
    the protocol before 2026-07-28 (initialize, then a session), as most clients in use do."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with create_mcp_http_client(headers=headers) as http:
        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http),
                          client_info=CLIENT_INFO, mode=mode) as client:
            yield client
