"""``python -m controlplane serve ...``: the MCP server; ``python -m controlplane validate ...``: phase 6.

The manifest comes from ``--manifest FILE``, ``--stack NAME`` (its outputs, read with your Pulumi
environment) or ``$SLICE_MANIFEST`` (JSON); the org token from ``FLY_ORG_TOKEN``.

Over HTTP with --allow-writes, clients must authenticate with a bearer token the operator configures
(--auth-token-file FILE or $CONTROLPLANE_HTTP_TOKEN); see docs/control-plane.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import ControlPlaneError
from .manifest import REPO, load_slice, stack_token


def _source_args(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifest", type=Path, metavar="FILE", help="the stack outputs as JSON")
    source.add_argument("--stack", help="read the manifest from this stack's outputs (Automation API)")
    source.add_argument("--manifest-env", metavar="VAR", help="read the manifest (JSON) from this variable "
                                                            "(default SLICE_MANIFEST)")
    parser.add_argument("--work-dir", type=Path, default=None, help="the Pulumi project directory (default: this repo)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m controlplane", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the MCP server")
    transport = serve.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="MCP over stdin/stdout (the default)")
    transport.add_argument("--http", action="store_true", help="MCP over streamable HTTP at http://HOST:PORT/mcp")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default loopback)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--allow-writes", action="store_true",
                       help="let tools change the slice (ensure/destroy apps, apply plans); off by default. Over "
                            "HTTP it needs authentication (--auth-token-file or $CONTROLPLANE_HTTP_TOKEN)")
    serve.add_argument("--auth-token-file", type=Path, default=None, metavar="FILE",
                       help="HTTP: the bearer tokens clients must send, one a line (`TOKEN` or `ID TOKEN`), in a file "
                            "only its owner can read; or set $CONTROLPLANE_HTTP_TOKEN. Never on the command line")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME[:PORT]",
                       help="HTTP: a host name clients use to reach the server (Host/Origin checks); needed when "
                            "--host is beyond loopback; repeatable")
    serve.add_argument("--audit-log", type=Path, default=None, metavar="FILE", help="append one JSON line a call (default $CONTROLPLANE_AUDIT_LOG, "
                                            "else artifacts/controlplane/audit.jsonl)")
    _source_args(serve)
    validate = sub.add_parser("validate", help="phase 6: validate the slice through the control plane's checks")
    _source_args(validate)
    return parser


def _load(args: argparse.Namespace):  # noqa: ANN202 - Slice, imported lazily with its caller
    return load_slice(manifest_file=args.manifest, manifest_env=args.manifest_env, stack=args.stack,
                      work_dir=args.work_dir)


def validate(args: argparse.Namespace) -> int:
    from .infra import Infra, connection_for
    from .validate import validate_slice

    slice_ = _load(args)
    # The org token; with --stack and no FLY_ORG_TOKEN, the stack's own control plane token.
    token = os.environ.get("FLY_ORG_TOKEN") or (stack_token(args.stack, args.work_dir) if args.stack else None)
    with Infra(slice_, connection_for(slice_, token)) as infra:
        report = validate_slice(infra)
    print(report.render())
    return 0 if report.ok else 1


def serve(args: argparse.Namespace) -> int:
    import enginejob

    from .guard import AuditLog
    from .httpauth import LOOPBACK, TOKEN_ENV, AuditRefusals, auth_settings, load_tokens, transport_security
    from .infra import Infra, connection_for
    from .provision import Provisioner
    from .server import build_server

    # Everything that can refuse the start is checked before the manifest and the token are read.
    tokens = security = None
    if args.http:
        tokens = load_tokens(args.auth_token_file)
        os.environ.pop(TOKEN_ENV, None)  # read once: the engine jobs this server starts inherit its environment
        if args.allow_writes and tokens is None:
            from .httpauth import GENERATE
            raise ControlPlaneError("serve --http --allow-writes needs authentication, and no bearer token is "
                                    "configured (any local process could otherwise change the slice)", GENERATE)
        security = transport_security(args.host, args.allowed_host)
    elif args.auth_token_file or args.allowed_host:
        raise ControlPlaneError("--auth-token-file and --allowed-host apply to --http only",
                                "add --http, or leave them out for stdio")
    audit_path = args.audit_log or Path(os.environ.get("CONTROLPLANE_AUDIT_LOG") or
                                        REPO / "artifacts" / "controlplane" / "audit.jsonl")
    AuditLog(audit_path).check()  # a server that cannot record what it is asked to do does not start
    slice_ = _load(args)
    connection = connection_for(slice_)
    secrets = (connection.token.get_secret_value(), *(tokens.values if tokens else ()))
    audit = AuditLog(audit_path, secrets)
    stacks = {s for s in (args.stack, slice_.prefix) if s}
    runner = enginejob.Runner()
    for swept in runner.sweep():  # engine jobs whose process died (a server killed outright, say)
        print(f"controlplane: cleaned up after {swept.title or swept.kind} (started {swept.started}), whose "
              "process had died", file=sys.stderr)
    provisioner = Provisioner(allowed_stacks=stacks, work_dir=args.work_dir or REPO, secrets=secrets, runner=runner)
    with Infra(slice_, connection, allow_writes=args.allow_writes) as infra:
        server = build_server(infra, audit=audit, provisioner=provisioner, secrets=secrets,
                              reload_manifest=(lambda: _load(args)) if args.stack else None,
                              token_verifier=tokens, auth=auth_settings(args.host, args.port) if tokens else None)
        if args.http:
            if args.host not in LOOPBACK and tokens is None:
                print(f"controlplane: serving on {args.host}, beyond loopback, without authentication: anyone "
                      "who reaches it can read the slice", file=sys.stderr)
            print(f"controlplane: slice {slice_.prefix} (org {slice_.org}), writes "
                  f"{'ALLOWED' if args.allow_writes else 'off'}, authentication "
                  f"{f'bearer token ({len(tokens.tokens)})' if tokens else 'off'}, "
                  f"http://{args.host}:{args.port}/mcp", file=sys.stderr)
            import uvicorn

            app = AuditRefusals(server.streamable_http_app(transport_security=security, host=args.host), audit)
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        else:
            server.run("stdio")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return validate(args) if args.command == "validate" else serve(args)
    except ControlPlaneError as exc:
        print(f"controlplane {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
