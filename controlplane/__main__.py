"""``python -m controlplane serve ...``: the MCP server; ``python -m controlplane validate ...``: phase 6.

The manifest comes from ``--manifest FILE``, ``--stack NAME`` (its outputs, read with your Pulumi
environment) or ``$SLICE_MANIFEST`` (JSON); the org token from ``FLY_ORG_TOKEN``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import ControlPlaneError
from .manifest import REPO, load_slice, stack_token

LOOPBACK = ("127.0.0.1", "::1", "localhost")


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
                       help="let tools change the slice (ensure/destroy apps, apply plans); off by default")
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
    from .guard import AuditLog
    from .infra import Infra, connection_for
    from .provision import Provisioner
    from .server import build_server

    slice_ = _load(args)
    connection = connection_for(slice_)
    token = connection.token.get_secret_value()
    secrets = (token,)
    audit_path = args.audit_log or Path(os.environ.get("CONTROLPLANE_AUDIT_LOG") or
                                        REPO / "artifacts" / "controlplane" / "audit.jsonl")
    audit = AuditLog(audit_path, secrets)
    stacks = {s for s in (args.stack, slice_.prefix) if s}
    provisioner = Provisioner(allowed_stacks=stacks, work_dir=args.work_dir or REPO, secrets=secrets)
    import enginejob

    for swept in enginejob.Runner().sweep():  # engine runs a killed server left: say what they may have left
        print(f"controlplane: {swept.sentence()}", file=sys.stderr)
    with Infra(slice_, connection, allow_writes=args.allow_writes) as infra:
        server = build_server(infra, audit=audit, provisioner=provisioner, secrets=secrets,
                              reload_manifest=(lambda: _load(args)) if args.stack else None)
        if args.http:
            if args.host not in LOOPBACK:
                print(f"controlplane: serving on {args.host}, beyond loopback: put it behind an authenticating "
                      "proxy", file=sys.stderr)
            print(f"controlplane: slice {slice_.prefix} (org {slice_.org}), writes "
                  f"{'ALLOWED' if args.allow_writes else 'off'}, http://{args.host}:{args.port}/mcp", file=sys.stderr)
            server.run("streamable-http", host=args.host, port=args.port)
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
