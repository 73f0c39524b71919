"""The control plane as an MCP client sees it: `python -m controlplane serve --stdio` in its own process,
driven by the `mcp` SDK's client (as tests/controlplane/test_server.py starts it), every call kept in a
transcript with no token or secret value in it."""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .redact import Redactor

REPO = Path(__file__).resolve().parents[2]


class McpSession:
    """One server and one client session, kept open across calls (a blocking portal runs the SDK's async
    client on a thread of its own). Use as a context manager."""

    def __init__(self, *, label: str, manifest_file: Path, token: str, transcript: Path, redactor: Redactor,
                 work_dir: Path | None, env: dict[str, str], server_log: Path) -> None:
        self.label = label
        self._manifest_file, self._token, self._work_dir = manifest_file, token, work_dir
        self._env, self._server_log = env, server_log
        self.transcript = transcript
        self._redactor = redactor
        self._stack = ExitStack()
        self._client: Any = None
        self._portal: Any = None

    def __enter__(self) -> McpSession:
        from anyio.from_thread import start_blocking_portal
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client

        args = ["-m", "controlplane", "serve", "--stdio", "--manifest", str(self._manifest_file),
                "--audit-log", str(self._server_log.with_suffix(".audit.jsonl"))]
        if self._work_dir is not None:
            args += ["--work-dir", str(self._work_dir)]
        env = {**self._env, "FLY_ORG_TOKEN": self._token, "PYTHONPATH": str(REPO)}
        try:
            self._portal = self._stack.enter_context(start_blocking_portal())
            errlog = self._stack.enter_context(self._server_log.open("a"))
            params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(REPO))
            self._client = self._stack.enter_context(
                self._portal.wrap_async_context_manager(Client(stdio_client(params, errlog=errlog))))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """{"ok", "text", "result"}: ``text`` is what the tool answered (its result as JSON, or its error)."""
        result = self._portal.call(self._client.call_tool, tool, arguments)
        text = "".join(getattr(c, "text", "") for c in result.content or [])
        value: Any = None
        if not result.is_error:
            value = result.structured_content
            if isinstance(value, dict) and set(value) == {"result"}:
                value = value["result"]
            if value is None:
                try:
                    value = json.loads(text)
                except ValueError:
                    value = text
            text = json.dumps(value, sort_keys=True)
        answer = {"ok": not result.is_error, "text": self._redactor.text(text), "result": self._redactor.value(value)}
        self._record({"server": self.label, "tool": tool, "arguments": self._redactor.arguments(arguments),
                      "ok": answer["ok"], "answer": answer["text"]})
        return answer

    def _record(self, entry: dict[str, Any]) -> None:
        self.transcript.parent.mkdir(parents=True, exist_ok=True)
        with self.transcript.open("a") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")


def server_env() -> dict[str, str]:
    """The server's environment: this process's, less any Fly token (the server gets only the org token it
    is given, as FLY_ORG_TOKEN)."""
    return {k: v for k, v in os.environ.items() if k not in ("FLY_API_TOKEN", "FLY_ACCESS_TOKEN", "FLY_ORG_TOKEN")}
