"""Who may call and what a call may name: bearer authentication over HTTP (a separate server process, the
SDK's client and a plain HTTP client), refusals at start, the structural allowlist, and the audit log
written before a call acts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from controlplane.guard import AuditLog
from controlplane.infra import Infra, connection_for
from controlplane.manifest import Slice
from controlplane.server import build_server
from controlplane_helpers import HTTP_TOKEN, HTTP_TOKEN_ID, REPO, SliceWorld, free_port, http_client, http_server

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "curl", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def manifest_file(world: SliceWorld, tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(world.manifest))
    return path


def test_http_with_writes_needs_the_bearer_token(world: SliceWorld, manifest_file: Path, tmp_path: Path) -> None:
    """Bound beyond loopback, writes on: no token or a wrong one is a 401, a foreign Host a 421, before
    anything reaches Fly; the configured token works, and the audit names its id, never its value."""
    world.flysim.clear_calls()
    port = free_port()
    with http_server(manifest_file, world.token, tmp_path, "--allow-writes", "--host", "0.0.0.0",
                     "--allowed-host", f"127.0.0.1:{port}", port=port) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with httpx.Client(timeout=10) as http:
            anonymous = http.post(url, headers=MCP_HEADERS, json=INITIALIZE)
            wrong = http.post(url, headers={**MCP_HEADERS, "Authorization": f"Bearer {HTTP_TOKEN[:-1]}x"},
                              json=INITIALIZE)
            rebound = http.post(url, headers={**MCP_HEADERS, "Authorization": f"Bearer {HTTP_TOKEN}",
                                              "Host": "evil.example"}, json=INITIALIZE)
            foreign_page = http.post(url, headers={**MCP_HEADERS, "Authorization": f"Bearer {HTTP_TOKEN}",
                                                   "Origin": "https://evil.example"}, json=INITIALIZE)
        assert (anonymous.status_code, wrong.status_code, rebound.status_code, foreign_page.status_code) == (
            401, 401, 421, 403)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert world.flysim.calls() == []

        async def scenario() -> dict[str, Any]:
            async with http_client(port, mode="legacy") as client:
                assert client.server_info.version  # the project's version, not empty
                result = await client.call_tool("infra_list_machines", {"app": "s1-worker-pool"})
                assert not result.is_error, result.content[0].text
                return result.structured_content
        listed = anyio.run(scenario)
    # An empty pool is an object whose list is empty, not nothing.
    assert listed == {"app": "s1-worker-pool", "machines": []}
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    # The refused requests are recorded, with what refused them and who sent them.
    assert [(e["tool"], e["outcome"], e["detail"][:3]) for e in lines[:4]] == [
        ("http", "refused", "401"), ("http", "refused", "401"), ("http", "refused", "421"),
        ("http", "refused", "403")]
    assert all(e["caller"]["peer"].startswith("127.0.0.1:") for e in lines[:4])
    lines = lines[4:]
    assert [(e["tool"], e["outcome"]) for e in lines] == [("infra_list_machines", "started"),
                                                         ("infra_list_machines", "ok")]
    caller = lines[0]["caller"]
    assert caller["transport"] == "http" and caller["token_id"] == HTTP_TOKEN_ID
    assert caller["client"] == "test-agent 1.0" and caller["peer"].startswith("127.0.0.1:")
    assert caller["session"] and caller["protocol"] == LATEST_HANDSHAKE_VERSION
    for text in ((tmp_path / "audit.jsonl").read_text(), (tmp_path / "server.log").read_text()):
        assert HTTP_TOKEN not in text and world.token not in text


def _serve(tmp_path: Path, token: str, manifest_file: Path, *flags: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controlplane", "serve", "--manifest", str(manifest_file), *flags],
                          env={"FLY_ORG_TOKEN": token, "PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", ""),
                               **(env or {})},
                          cwd=str(REPO), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--http", "--allow-writes"], ["--http --allow-writes needs authentication", "--auth-token-file",
                                    "CONTROLPLANE_HTTP_TOKEN", "Authorization: Bearer"]),
    (["--http", "--host", "0.0.0.0"], ["beyond loopback", "--allowed-host"]),
    (["--stdio", "--audit-log", "{file}/audit.jsonl"], ["the audit log", "cannot be written", "--audit-log"]),
], ids=["writes-without-auth", "beyond-loopback-without-allowed-hosts", "unwritable-audit-log"])
def test_what_cannot_be_safe_does_not_start(world: SliceWorld, manifest_file: Path, tmp_path: Path,
                                            flags: list[str], expected: list[str]) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    flags = [f.replace("{file}", str(tmp_path / "file")) for f in flags]
    if "--audit-log" not in flags:
        flags += ["--audit-log", str(tmp_path / "audit.jsonl")]
    world.flysim.clear_calls()
    result = _serve(tmp_path, world.token, manifest_file, *flags)
    assert result.returncode == 2, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and world.flysim.calls() == []


def test_token_file_readable_by_others_is_refused(world: SliceWorld, manifest_file: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(HTTP_TOKEN + "\n")
    token_file.chmod(0o644)
    result = _serve(tmp_path, world.token, manifest_file, "--http", "--allow-writes", "--auth-token-file",
                    str(token_file), "--audit-log", str(tmp_path / "audit.jsonl"))
    assert result.returncode == 2 and "can be read by other users" in result.stderr and "chmod 600" in result.stderr
    assert HTTP_TOKEN not in result.stderr


def _calls(world: SliceWorld, audit: AuditLog, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    slice_ = Slice.from_outputs(world.manifest, source="test").check("test")
    with Infra(slice_, connection_for(slice_, world.token), allow_writes=True) as infra:
        server = build_server(infra, audit=audit, secrets=(world.token,))

        async def call() -> list[Any]:
            async with Client(server) as client:
                return [await client.call_tool(tool, args) for tool, args in calls]
        return anyio.run(call)


def test_sibling_slices_and_look_alikes_are_refused(world: SliceWorld, tmp_path: Path) -> None:
    """Slice s1 names its own apps exactly and its customers' apps s1-cust-<customer>: a sibling slice's
    app (s1-2-nfs), an app of a slice named s1-cust (s1-cust-nfs) and an app without the customer marker
    are none of its business."""
    with world.admin() as fly:
        for name in ("s1-2-nfs", "s1-cust-nfs", "s1-cust-impostor"):
            fly.create_app(name, world.org)
        impostor = fly.create_machine("s1-cust-impostor", {"image": "registry.fly.io/someone-else:1"}, region="syd")
    world.flysim.clear_calls()
    try:
        sibling, look_alike, look_alike_list, unmarked, unmarked_list, too_long = _calls(
            world, AuditLog(None),
            ("infra_list_machines", {"app": "s1-2-nfs"}),
            ("infra_destroy_app", {"customer": "nfs"}),
            ("infra_list_machines", {"app": "s1-cust-nfs"}),
            ("infra_destroy_app", {"customer": "impostor"}),
            ("infra_list_machines", {"app": "s1-cust-impostor"}),
            ("infra_destroy_app", {"customer": "c" * 56}))  # s1-cust-ccc...: 64 characters
        assert world.mutations() == []
    finally:
        with world.admin() as fly:
            fly.delete_machine("s1-cust-impostor", impostor.id, force=True)
            for name in ("s1-2-nfs", "s1-cust-nfs", "s1-cust-impostor"):
                fly.delete_app(name)
    results = (sibling, look_alike, look_alike_list, unmarked, too_long, unmarked_list)
    texts = [r.content[0].text for r in results]
    assert all(r.is_error for r in results)
    assert "app s1-2-nfs is outside this control plane's allowlist" in texts[0]
    for text in texts[1:3]:
        assert "s1-cust-nfs is the name of app 'nfs' of a slice named s1-cust" in text
    for text in (texts[3], texts[5]):
        assert f"its machine {impostor.id} does not carry the customer marker (artifact_customer=impostor)" in text
    assert "too long" in texts[4] and "outside" not in texts[4]
    assert all("Traceback" not in t and "Fix:" in t for t in texts)


def test_unwritable_audit_log_refuses_the_call_before_it_acts(world: SliceWorld, tmp_path: Path) -> None:
    """The log became unwritable after the start: a call is refused, and nothing is done at Fly."""
    (tmp_path / "file").write_text("")
    world.flysim.clear_calls()
    [refused] = _calls(world, AuditLog(tmp_path / "file" / "audit.jsonl"), ("infra_ensure_app", {"customer": "acme"}))
    assert refused.is_error and "was refused, nothing was done" in refused.content[0].text
    assert "cannot be written" in refused.content[0].text
    assert world.flysim.calls() == []


@pytest.mark.parametrize(("text", "expected"), [
    ("short\n", "is 5 characters long, shorter than 32"),
    (f"a b {HTTP_TOKEN}\n", "expected `TOKEN` or `ID TOKEN`"),
    (f"x {HTTP_TOKEN}\nx {HTTP_TOKEN[::-1]}\n", "token id x is given twice"),
    ("# only a comment\n", "holds no token"),
])
def test_token_file_mistakes_are_named(tmp_path: Path, text: str, expected: str) -> None:
    from controlplane.errors import ControlPlaneError
    from controlplane.httpauth import load_tokens

    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ControlPlaneError) as refused:
        load_tokens(path, environ={})
    assert expected in str(refused.value) and HTTP_TOKEN not in str(refused.value)


def test_tokens_from_file_and_environment(tmp_path: Path) -> None:
    from controlplane.httpauth import load_tokens, token_id

    path = tmp_path / "tokens"
    path.write_text(f"# agents\n{HTTP_TOKEN_ID} {HTTP_TOKEN}\n\n{HTTP_TOKEN[::-1]}\n")
    path.chmod(0o600)
    other = "e" * 40
    tokens = load_tokens(path, environ={"CONTROLPLANE_HTTP_TOKEN": other})
    assert tokens is not None
    assert [i for i, _ in tokens.tokens] == [HTTP_TOKEN_ID, token_id(HTTP_TOKEN[::-1]), f"env:{token_id(other)}"]
    found = [anyio.run(tokens.verify_token, t) for t in (HTTP_TOKEN, other, HTTP_TOKEN + "x", "")]
    assert [t.client_id if t else None for t in found] == [HTTP_TOKEN_ID, f"env:{token_id(other)}", None, None]
    assert load_tokens(None, environ={}) is None
