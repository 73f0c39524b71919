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

import anyio
import anyio.to_thread
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from components.customer_app import ENV_NAME_RE, CustomerInputError, field_problems, registry_of
from components.customer_app import defaults as customer_defaults

from . import __version__
from .customers import Customers
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
apps are <slice>-cust-<customer> in the slice's org. infra_ensure_app with dry_run=true returns the
steps the apply would make without changing anything; arguments left out keep the customer's current
settings. Writes need a server started with --allow-writes."""


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


def _strings(argument: str, values: dict[str, Any]) -> dict[str, str]:
    """A map of names to text, checked without repeating a value (secrets travel in these)."""
    problems = []
    for i, (name, value) in enumerate(values.items(), 1):
        if not ENV_NAME_RE.fullmatch(name):
            problems.append(f"{argument}: name #{i} is not a valid variable name (letters, digits and _, not "
                            "starting with a digit)")
        elif not isinstance(value, str):
            problems.append(f"{argument}.{name}: is not text (a string)")
    if problems:
        raise ControlPlaneError(f"invalid input: {'; '.join(problems)}", "correct the named argument(s) and call again")
    return dict(values)


async def refusals_without_values(ctx: Any, call_next: Any) -> Any:
    """Middleware: the SDK's own refusal of arguments that fail the tool's schema repeats each rejected value
    (pydantic's ``input_value=...``), which may be a secret sent in the wrong place: the caller gets the
    argument and the problem, not the value."""
    result = await call_next(ctx)
    if ctx.method != "tools/call":
        return result
    is_error = result.get("isError") if isinstance(result, dict) else getattr(result, "is_error", False)
    content = (result.get("content") if isinstance(result, dict) else getattr(result, "content", None)) or []
    for item in content if is_error else []:
        text = item.get("text") if isinstance(item, dict) else getattr(item, "text", None)
        if isinstance(text, str) and "input_value=" in text:
            cleaned = "\n".join(line for line in _no_values(text).splitlines()
                                if "errors.pydantic.dev" not in line)
            if isinstance(item, dict):
                item["text"] = cleaned
            else:
                item.text = cleaned
    return result


def _no_values(text: str) -> str:
    """pydantic's messages echo the rejected value (``input_value=...``), which may be a secret."""
    return INPUT_VALUE.sub("input_value=[redacted], ", text)


def build_server(infra: Infra, *, audit: AuditLog, provisioner: Provisioner | None = None,
                 secrets: tuple[str, ...] = (), reload_manifest: Callable[[], Slice] | None = None,
                 token_verifier: TokenVerifier | None = None, auth: AuthSettings | None = None,
                 customers: Customers | None = None) -> MCPServer:
    """``reload_manifest`` reads the manifest again after an applied plan (a server started with
    ``--stack``); otherwise the manifest is the one given at start. ``token_verifier`` and ``auth``: the
    HTTP transport's authentication (``controlplane.httpauth``). ``customers``: where customer apps' engine
    runs go (default: the slice's backend from the Pulumi environment, ``Customers.from_environment``)."""
    server = MCPServer("artifact-controlplane", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING",
                       middleware=[audited(audit), refusals_without_values], token_verifier=token_verifier,
                       auth=auth)
    slice_ = infra.slice

    def tool_error(tool: str, exc: Exception) -> ToolError:
        """What the caller hears of a failure: a ControlPlaneError's words (scrubbed); of a bug, its type
        only, never a traceback or values."""
        if isinstance(exc, ControlPlaneError):
            return ToolError(scrub(str(exc), secrets))
        log.error("%s failed unexpectedly: %s", tool, type(exc).__name__)
        return ToolError(f"{tool} failed with an internal error ({type(exc).__name__}). Fix: retry; if it "
                         "persists, report it with the audit log entry of this call")

    def run(tool: str, args: dict[str, Any], op: Callable[[], Any]) -> Any:
        try:
            return op()
        except Exception as exc:
            raise tool_error(tool, exc) from None

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

    if customers is None:
        customers = Customers.from_environment(slice_, infra.connection.token.get_secret_value(), forget=infra.forget)

    async def customer_call(tool: str, op: Callable[[], Any], ctx: Context | None) -> dict[str, Any]:
        """Checks and preflight on a worker thread, then the engine run (started or joined), its events sent
        to the caller as progress notifications."""
        async def progress(done: float, message: str) -> None:
            if ctx is not None:
                try:
                    await ctx.report_progress(done, None, message)
                except Exception:  # noqa: BLE001 - a client that left does not stop the run
                    pass
        try:
            started = await anyio.to_thread.run_sync(op)
            return await started.follow(progress)
        except Exception as exc:
            raise tool_error(tool, exc) from None

    @server.tool(name="infra_ensure_app", title="Ensure a customer app",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=True))
    async def infra_ensure_app(
        customer: Annotated[str, Field(description="customer id (lowercase letters, digits, dashes); the app is "
                                                   f"{slice_.prefix}-cust-<customer>")],
        region: Annotated[str | None, Field(description="Fly region (new customer: the slice's region). A change "
                                                        "replaces the machine and volume: the data does not move")] = None,
        image: Annotated[str | None, Field(description="agent image, from a registry the slice uses (new customer: "
                                                       "the worker pool's)")] = None,
        env: Annotated[dict[str, Any] | None, Field(description="environment variables: replaces the customer's "
                                                                "env; omit to keep it, {} to clear it")] = None,
        secrets: Annotated[dict[str, Any] | None, Field(description="Fly secrets (never echoed or logged): replaces "
                                                                    "the customer's secrets; omit to keep them")] = None,
        cpu_kind: Annotated[Literal["shared", "performance"] | None, Field(description="omit to keep")] = None,
        cpus: Annotated[int | None, Field(description="shared: 1, 2, 4, 6, 8; performance: 1, 2, 4, 6, ... 16")] = None,
        memory_mb: Annotated[int | None, Field(description="multiple of 256; shared 256-2048 a CPU, performance "
                                                           "2048-8192 a CPU")] = None,
        auto_stop: Literal["off", "stop", "suspend"] | None = None,
        auto_start: bool | None = None,
        volume_size_gb: Annotated[int | None, Field(description="size of volume 'data' at /data (new customer: 1; 0 "
                                                                "for none); it only grows")] = None,
        dry_run: Annotated[bool, Field(description="check and return the steps the apply would make (a preview) "
                                                   "and the monthly Fly cost before and after them; change "
                                                   "nothing")] = False,
        refresh: Annotated[bool, Field(description="first read what exists at Fly (pulumi refresh), so what was "
                                                   "changed or removed outside the control plane is repaired")] = False,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> dict[str, Any]:
        """Create or converge a customer's app (app, Flycast address, secrets, volume, machine from the agent
        image) to the given settings; an omitted argument keeps the customer's current setting. A dry run
        returns exactly the steps the apply makes. Volumes grow in place and never shrink; a region change
        replaces the machine and volume (the data does not move). Progress is notified while it runs."""
        given = {"region": region, "image": image, "env": env, "cpu_kind": cpu_kind, "cpus": cpus,
                 "memory_mb": memory_mb, "auto_stop": auto_stop, "auto_start": auto_start,
                 "volume_size_gb": volume_size_gb}
        requested = {k: v for k, v in given.items() if v is not None}

        def op() -> Any:
            checked = _customer(customer)
            if not dry_run:
                infra.guard.write("infra_ensure_app")
            values = _strings("secrets", secrets) if secrets is not None else None
            if env is not None:
                requested["env"] = _strings("env", env)
            defaults = customer_defaults(slice_.agent_template, slice_.region, slice_.agent_image)
            try:
                field_problems(requested, defaults, set(map(registry_of, slice_.images)))
            except CustomerInputError as exc:
                raise ControlPlaneError(f"invalid input: {exc}", "correct the named argument(s) and call again") \
                    from None
            found = infra.preflight(checked, nfs=dry_run)
            return customers.ensure(checked, requested=requested, secrets=values, dry_run=dry_run, defaults=defaults,
                                    template=slice_.agent_template,
                                    registries=sorted(set(map(registry_of, slice_.images))),
                                    app_exists=found["exists"], refresh=refresh)
        return await customer_call("infra_ensure_app", op, ctx)

    @server.tool(name="infra_destroy_app", title="Destroy a customer app",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=True))
    async def infra_destroy_app(
        customer: Annotated[str, Field(description=f"customer id; destroys {slice_.prefix}-cust-<customer>")],
        ctx: Context = None,  # type: ignore[assignment]
    ) -> dict[str, Any]:
        """Tear down a customer's app and its stack: machine, then volume, secrets and address, then the app.
        A customer that does not exist is a no-op."""
        def op() -> Any:
            checked = _customer(customer)
            infra.guard.write("infra_destroy_app")
            name = infra.guard.app(customers.stack(checked))
            if infra.find_app(name) is not None:  # an app of that name must be this customer's, by its marker
                infra.guard.customer_marker(name, checked, infra.list_machines(name))
            return customers.destroy(checked)
        return await customer_call("infra_destroy_app", op, ctx)

    def _customer(value: Any) -> str:
        return infra.guard.customer(value)

    @server.tool(name="infra_provision_org", title="Provision the slice (Pulumi)",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                                             open_world_hint=True))
    def infra_provision_org(
        stack: Annotated[str, Field(description="the slice's Pulumi stack")],
        apply: Annotated[bool, Field(description="false: preview and return a plan_id; true: apply that plan")] = False,
        plan_id: Annotated[str | None, Field(description="the plan_id of the preview to apply")] = None,
    ) -> dict[str, Any]:
        """The slice itself through the Automation API: a preview returns the planned changes, the monthly Fly
        cost before and after them (prices the table lacks named as unknown) and a plan id; applying requires
        that id and refuses when the plan has changed since."""
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
