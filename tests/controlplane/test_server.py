"""The control plane's MCP server, driven by the `mcp` SDK's own client over stdio and over streamable
HTTP (`python -m controlplane serve` as a separate process), against a slice in flysim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from controlplane_helpers import HTTP_TOKEN, REPO, SliceWorld, http_client, http_server

TOOLS = {"infra_manifest", "infra_list_machines", "infra_ensure_app", "infra_destroy_app", "infra_provision_org"}




@pytest.fixture
def manifest_file(world: SliceWorld, tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(world.manifest))
    return path


def _env(token: str) -> dict[str, str]:
    return {"FLY_ORG_TOKEN": token, "PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "")}


@asynccontextmanager
async def connect(transport: str, manifest_file: Path, token: str, tmp_path: Path, *flags: str) -> AsyncIterator[Client]:
    """`python -m controlplane serve` in its own process, and the SDK's client connected to it (over HTTP
    with the bearer token the server is configured with). The server's stderr goes to
    tmp_path/server.log and its audit log to tmp_path/audit.jsonl."""
    args = ["-m", "controlplane", "serve", "--manifest", str(manifest_file), "--audit-log",
            str(tmp_path / "audit.jsonl"), *flags]
    if transport == "stdio":
        with (tmp_path / "server.log").open("a") as log:
            params = StdioServerParameters(command=sys.executable, args=[*args, "--stdio"], env=_env(token),
                                           cwd=str(REPO))
            async with Client(stdio_client(params, errlog=log)) as client:
                yield client
        return
    with http_server(manifest_file, token, tmp_path, *flags) as port:
        async with http_client(port) as client:
            yield client


def _result(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if isinstance(content, dict) and set(content) == {"result"} else content
    return json.loads(result.content[0].text)


def _error(result: Any) -> str:
    assert result.is_error, result
    text = result.content[0].text
    assert "Traceback" not in text
    return text


def _no_token_anywhere(token: str, *texts: str) -> None:
    fragments = {token, token[:12], token[-12:], token[len(token) // 2 - 6: len(token) // 2 + 6]}
    for text in texts:
        for fragment in fragments:
            assert fragment not in text


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_tools_over_transport(transport: str, world: SliceWorld, manifest_file: Path, tmp_path: Path) -> None:
    seen: list[str] = []

    async def scenario() -> None:
        async with connect(transport, manifest_file, world.token, tmp_path, "--allow-writes") as client:
            # Listing: every tool, with its input schema and annotations.
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == TOOLS
            ensure = tools["infra_ensure_app"]
            assert ensure.input_schema["required"] == ["customer"]
            assert {"region", "image", "env", "secrets", "cpu_kind", "cpus", "memory_mb", "auto_stop", "auto_start",
                    "volume_size_gb", "dry_run"} <= set(ensure.input_schema["properties"])
            # Idempotent, and destructive: a region change replaces the volume (its data does not move).
            assert ensure.annotations.idempotent_hint and not ensure.annotations.read_only_hint
            assert ensure.annotations.destructive_hint
            assert tools["infra_destroy_app"].annotations.destructive_hint
            assert tools["infra_list_machines"].annotations.read_only_hint
            assert tools["infra_manifest"].annotations.read_only_hint
            assert tools["infra_list_machines"].input_schema["required"] == ["app"]

            manifest = _result(await client.call_tool("infra_manifest", {}))
            assert manifest["slice"] == "s1" and manifest["org"]["slug"] == "personal"
            seen.append(json.dumps(manifest))

            machines = _result(await client.call_tool("infra_list_machines", {"app": "s1-nfs"}))
            assert machines["app"] == "s1-nfs"
            [nfs] = machines["machines"]
            assert nfs["state"] == "started" and nfs["region"] == "syd" and nfs["image"] and nfs["updated_at"]

            # Outside the allowlist: refused before any call.
            world.flysim.clear_calls()
            refused = _error(await client.call_tool("infra_list_machines", {"app": "someone-elses-app"}))
            assert "outside this control plane's allowlist" in refused and "s1-*" in refused
            assert world.flysim.calls() == []

    anyio.run(scenario)
    audit = (tmp_path / "audit.jsonl").read_text()
    lines = [json.loads(line) for line in audit.splitlines()]
    # Each call: a line before it acts, then its outcome, both naming the call and the caller.
    assert [e["outcome"] for e in lines[:2]] == ["started", "ok"] and lines[0]["call"] == lines[1]["call"]
    assert all(e["caller"]["transport"] == transport for e in lines)
    entries = [e for e in lines if e["outcome"] != "started"]
    assert [e["tool"] for e in entries][:2] == ["infra_manifest", "infra_list_machines"]
    assert all({"time", "tool", "args", "outcome", "call", "caller"} <= set(e) for e in entries)
    assert any(e["outcome"] == "error" and e["args"] == {"app": "someone-elses-app"} for e in entries)
    _no_token_anywhere(world.token, audit, (tmp_path / "server.log").read_text(), *seen)


def test_writes_refused_unless_allowed(world: SliceWorld, manifest_file: Path, tmp_path: Path) -> None:
    async def scenario() -> tuple[str, str, Any]:
        async with connect("stdio", manifest_file, world.token, tmp_path) as client:
            world.flysim.clear_calls()
            ensure = _error(await client.call_tool("infra_ensure_app", {"customer": "acme"}))
            destroy = _error(await client.call_tool("infra_destroy_app", {"customer": "acme"}))
            return ensure, destroy, world.flysim.calls()

    ensure, destroy, calls = anyio.run(scenario)
    for text in (ensure, destroy):
        assert "writes are not allowed" in text and "--allow-writes" in text
    assert "dry_run=true" in ensure and "dry_run" not in destroy  # only what the tool has
    assert calls == []  # refused before any API call


def test_revoked_token_is_a_clear_tool_error(world: SliceWorld, manifest_file: Path, tmp_path: Path) -> None:
    token, token_id = world.new_token()
    with world.admin() as fly:
        fly.revoke_org_token(token_id)
    world.flysim.clear_calls()

    async def scenario() -> list[str]:
        async with connect("http", manifest_file, token, tmp_path, "--allow-writes") as client:
            return [_error(await client.call_tool("infra_list_machines", {"app": "s1-nfs"})),
                    _error(await client.call_tool("infra_ensure_app", {"customer": "acme", "dry_run": True})),
                    _error(await client.call_tool("infra_ensure_app", {"customer": "acme"}))]

    errors = anyio.run(scenario)
    for text in errors:
        assert "rejected the org token" in text and "revoked" in text and "FLY_ORG_TOKEN" in text
    assert world.mutations() == []
    _no_token_anywhere(token, *errors, (tmp_path / "audit.jsonl").read_text(),
                       (tmp_path / "server.log").read_text())


def test_http_binds_loopback_by_default(world: SliceWorld, manifest_file: Path, tmp_path: Path) -> None:
    """Read-only, no token configured: served on loopback to any local client, saying so at start."""
    async def scenario() -> None:
        with http_server(manifest_file, world.token, tmp_path, auth=False) as port:
            async with http_client(port, bearer=None) as client:
                assert (await client.list_tools()).tools

    anyio.run(scenario)
    log = (tmp_path / "server.log").read_text()
    assert "http://127.0.0.1:" in log and "writes off, authentication off" in log


def test_serve_without_token_says_what_to_set(manifest_file: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "controlplane", "serve", "--manifest", str(manifest_file)],
                            env={"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "")}, cwd=str(REPO),
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "FLY_ORG_TOKEN is not set" in result.stderr and "Traceback" not in result.stderr


def test_http_client_refuses_foreign_host_header(world: SliceWorld, manifest_file: Path, tmp_path: Path) -> None:
    """DNS rebinding: a loopback server answers only requests addressed to loopback."""
    async def scenario() -> int:
        async with connect("http", manifest_file, world.token, tmp_path):
            port = int((tmp_path / "server.log").read_text().split("http://127.0.0.1:")[1].split("/")[0])
            response = httpx.post(f"http://127.0.0.1:{port}/mcp", headers={"Host": "evil.example",
                                                                          "Authorization": f"Bearer {HTTP_TOKEN}"},
                                  json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            return response.status_code

    assert anyio.run(scenario) in (400, 403, 421)
