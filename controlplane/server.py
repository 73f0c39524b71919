"""The MCP server: the runbook's ``infra_*`` tools over stdio or streamable HTTP (official ``mcp`` SDK).

Tool names use ``_``, not the runbook's ``.``: Claude (Desktop and the API: ``^[a-zA-Z0-9_-]{1,64}$``),
OpenAI's API and Codex (``^[a-zA-Z0-9_-]+$``) and GitHub Copilot CLI refuse tool names with dots.

Every call is checked (writes allowed? app in the allowlist? input valid?) before any API call,
recorded in the audit log, and fails as an MCP tool error (``isError``) that says what failed and the
fix; never a traceback, never a token.
"""

# No `from __future__ import annotations`: the SDK evaluates the tools' annotations, which use locals.

import logging
import re
import uuid
from typing import Annotated, Any, Awaitable, Callable, Literal

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from . import __version__
from .errors import ControlPlaneError
from .guard import AuditLog, AuditLogUnwritable, scrub
from .infra import Infra
from .manifest import Slice
from .provision import Provisioner

log = logging.getLogger("controlplane")

INPUT_VALUE = re.compile(r"input_value=.*?, (?=input_type=)")
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)

INSTRUCTIONS = """\
The control plane of one Artifact org slice on Fly.io. infra_manifest describes the slice; customer
apps are <slice>-cust-<customer> in the slice's org. infra_ensure_app with dry_run=true checks and plans
without changing anything. Writes need a server started with --allow-writes."""


def caller_of(ctx: Any) -> dict[str, Any]:
    """Who is calling, as far as the transport knows: the bearer token's id (never the token), the client's
    name and version (from ``initialize``, or the request's envelope), the MCP session id (protocol
    versions from 2026-07-28 have none) and the peer address."""
    caller: dict[str, Any] = {"protocol": getattr(ctx, "protocol_version", None)}
    request = getattr(ctx, "request", None)
    if request is not None and hasattr(request, "scope"):
        caller["transport"] = "http"
        user = request.scope.get("user")
        token = getattr(user, "access_token", None)
        caller["token_id"] = getattr(token, "client_id", None)
        peer = request.scope.get("client")
        caller["peer"] = f"{peer[0]}:{peer[1]}" if peer else None
        caller["session"] = request.headers.get("mcp-session-id")
    else:
        caller["transport"] = "stdio"
    session = getattr(ctx, "session", None)
    params = getattr(session, "client_params", None) if session is not None else None
    info = getattr(params, "client_info", None)
    caller["client"] = f"{info.name} {info.version}".strip() if info is not None else None
    if caller.get("session") is None and session is not None:
        connection = getattr(session, "_connection", None)  # the SDK keeps the session id there
        caller["session"] = getattr(connection, "session_id", None)
    return caller


def audited(audit: AuditLog) -> Callable[[Any, Any], Awaitable[Any]]:
    """Middleware: every tool call, those the SDK refuses (unknown tool, arguments that fail the schema)
    included, is recorded before it acts (``started``) and after (``ok`` or ``error``), naming the caller.
    A call whose first line cannot be written is refused without acting. Arguments are as the caller
    sent them, secrets redacted."""
    async def middleware(ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        params = dict(ctx.params or {})
        tool, args = str(params.get("name", "")), dict(params.get("arguments") or {})
        call, caller = uuid.uuid4().hex[:16], caller_of(ctx)

        def record(outcome: str, detail: str = "") -> None:
            audit.record(tool, args, outcome, detail, call=call, caller=caller)

        try:
            record("started")
        except AuditLogUnwritable as exc:
            log.error("refused %s: %s", tool, exc)
            return CallToolResult(content=[TextContent(type="text", text=f"{tool} was refused, nothing was done: "
                                                                         f"{exc}")], is_error=True)
        try:
            result = await call_next(ctx)
        except Exception as exc:
            _record_after(record, "error", _no_values(f"{type(exc).__name__}: {exc}"))
            raise
        is_error = result.get("isError") if isinstance(result, dict) else getattr(result, "is_error", False)
        if is_error:
            content = result.get("content") if isinstance(result, dict) else getattr(result, "content", None)
            first = (content or [None])[0]
            text = first.get("text", "") if isinstance(first, dict) else getattr(first, "text", "")
            _record_after(record, "error", _no_values(text))
        else:
            _record_after(record, "ok")
        return result
    return middleware


def _record_after(record: Callable[..., None], outcome: str, detail: str = "") -> None:
    """The outcome line: the call has acted, so a log that became unwritable since its first line is
    reported to the operator (stderr), not to the caller."""
    try:
        record(outcome, detail)
    except AuditLogUnwritable as exc:
        log.error("the outcome (%s) of an audited call could not be recorded: %s", outcome, exc)


def _no_values(text: str) -> str:
    """pydantic's messages echo the rejected value (``input_value=...``), which may be a secret."""
    return INPUT_VALUE.sub("input_value=[redacted], ", text)


def build_server(infra: Infra, *, audit: AuditLog, provisioner: Provisioner | None = None,
                 secrets: tuple[str, ...] = (), reload_manifest: Callable[[], Slice] | None = None,
                 token_verifier: TokenVerifier | None = None, auth: AuthSettings | None = None) -> MCPServer:
    """``reload_manifest`` reads the manifest again after an applied plan (a server started with
    ``--stack``); otherwise the manifest is the one given at start. ``token_verifier`` and ``auth``: the
    HTTP transport's authentication (``controlplane.httpauth``)."""
    server = MCPServer("artifact-controlplane", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING",
                       middleware=[audited(audit)], token_verifier=token_verifier, auth=auth)
    slice_ = infra.slice

    def run(tool: str, args: dict[str, Any], op: Callable[[], Any]) -> Any:
        try:
            return op()
        except ControlPlaneError as exc:
            raise ToolError(scrub(str(exc), secrets)) from None
        except Exception as exc:  # a bug: the type only, never a traceback or values to the caller
            log.error("%s failed unexpectedly: %s", tool, type(exc).__name__)
            raise ToolError(f"{tool} failed with an internal error ({type(exc).__name__}). Fix: retry; if it "
                            "persists, report it with the audit log entry of this call") from None

    @server.tool(name="infra_manifest", title="Slice manifest", annotations=READ)
    def infra_manifest() -> dict[str, Any]:
        """The slice's handover manifest (its stack outputs without secrets): org, token metadata, and
        each app's name, id, region, image, machines and volumes."""
        return run("infra_manifest", {}, infra.manifest)

    @server.tool(name="infra_list_machines", title="List machines", annotations=READ)
    def infra_list_machines(
        app: Annotated[str, Field(description=f"app name: {slice_.prefix}-<role> or {slice_.prefix}-cust-<customer>")],
    ) -> dict[str, Any]:
        """The machines of one app of the slice: ``{"app": name, "machines": [...]}``, each machine with its
        id, name, state, region, image and updated time (an empty pool is an empty list)."""
        def op() -> dict[str, Any]:
            machines = infra.list_machines(app)
            if app.startswith(infra.guard.customer_prefix):  # a customer's app is one its machines say so
                infra.guard.customer_marker(app, app.removeprefix(infra.guard.customer_prefix), machines)
            return {"app": app, "machines": machines}
        return run("infra_list_machines", {"app": app}, op)

    @server.tool(name="infra_ensure_app", title="Ensure a customer app",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                             open_world_hint=True))
    def infra_ensure_app(
        customer: Annotated[str, Field(description="customer id (lowercase letters, digits, dashes); the app is "
                                                   f"{slice_.prefix}-cust-<customer>")],
        region: Annotated[str | None, Field(description=f"Fly region (default {slice_.region})")] = None,
        image: Annotated[str | None, Field(description="agent image (default: the worker pool's)")] = None,
        env: Annotated[dict[str, str] | None, Field(description="environment variables")] = None,
        secrets: Annotated[dict[str, str] | None, Field(description="Fly secrets (never echoed or logged)")] = None,
        cpu_kind: Literal["shared", "performance"] = "shared",
        cpus: Annotated[int, Field(description="shared: 1, 2, 4, 6, 8; performance: 1, 2, 4, 6, ... 16")] = 1,
        memory_mb: Annotated[int, Field(description="multiple of 256; shared 256-2048 a CPU, performance "
                                                    "2048-8192 a CPU")] = 256,
        auto_stop: Literal["off", "stop", "suspend"] = "suspend",
        auto_start: bool = True,
        volume_size_gb: Annotated[int, Field(description="size of volume 'data' at /data; 0 for none")] = 1,
        dry_run: Annotated[bool, Field(description="check inputs, token scope, name and NFS visibility and return "
                                                   "the plan; change nothing")] = False,
    ) -> dict[str, Any]:
        """Create or converge a customer's app, step by step: app, secrets, volume, machine from the agent
        image (env, CPU kind and count, memory, auto stop and start), then wait until it runs. A second
        identical call changes nothing."""
        args = {"customer": customer, "region": region, "image": image, "env": env, "secrets": secrets,
                "cpu_kind": cpu_kind, "cpus": cpus, "memory_mb": memory_mb, "auto_stop": auto_stop,
                "auto_start": auto_start, "volume_size_gb": volume_size_gb, "dry_run": dry_run}

        def op() -> dict[str, Any]:
            if not dry_run:
                infra.guard.write("infra_ensure_app")
            spec = infra.spec(customer, **{k: v for k, v in args.items() if k not in ("customer", "dry_run")})
            return infra.ensure_app(spec, dry_run=dry_run)
        return run("infra_ensure_app", args, op)

    @server.tool(name="infra_destroy_app", title="Destroy a customer app",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=True))
    def infra_destroy_app(
        customer: Annotated[str, Field(description=f"customer id; destroys {slice_.prefix}-cust-<customer>")],
    ) -> dict[str, Any]:
        """Tear down a customer's app: its machines, then its volumes once detached, then the app."""
        def op() -> dict[str, Any]:
            infra.guard.write("infra_destroy_app")
            return infra.destroy_app(customer)
        return run("infra_destroy_app", {"customer": customer}, op)

    @server.tool(name="infra_provision_org", title="Provision the slice (Pulumi)",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                                             open_world_hint=True))
    def infra_provision_org(
        stack: Annotated[str, Field(description="the slice's Pulumi stack")],
        apply: Annotated[bool, Field(description="false: preview and return a plan_id; true: apply that plan")] = False,
        plan_id: Annotated[str | None, Field(description="the plan_id of the preview to apply")] = None,
    ) -> dict[str, Any]:
        """The slice itself through the Automation API: a preview returns the planned changes and a plan
        id; applying requires that id and refuses when the plan has changed since."""
        def op() -> dict[str, Any]:
            if apply:
                infra.guard.write("infra_provision_org")
            if provisioner is None:
                raise ControlPlaneError("this server cannot run the Pulumi engine (no project directory)",
                                        "start it from the slice's project with --work-dir")
            if not apply:
                return provisioner.preview(stack)
            if not plan_id:
                raise ControlPlaneError("apply=true needs the plan_id of a preview",
                                        "call with apply=false first and pass its plan_id")
            applied = provisioner.apply(stack, plan_id)
            if reload_manifest is not None:
                infra.slice = reload_manifest()
                infra.guard.slice_apps = frozenset(a.name for a in infra.slice.apps.values())
            return applied
        return run("infra_provision_org", {"stack": stack, "apply": apply, "plan_id": plan_id}, op)

    return server
