"""Slice operations outside `pulumi up`: `python -m ops validate --stack S`, `python -m ops handover`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fly import FlyConnection, FlyError

from .stack import stack_outputs
from .validate import validate_slice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="phase 6: validate a slice with its org token")
    v.add_argument("--stack", required=True)
    v.add_argument("--work-dir", type=Path, default=None, help="the project directory (default: this repo)")
    args = parser.parse_args(argv)

    if args.command == "validate":
        outputs = stack_outputs(args.stack, args.work_dir)
        cfg = outputs.get("fly") or {}
        try:
            # The slice's own org token when it has one (the narrowest scope that works), else the
            # deployer's FLY_API_TOKEN.
            connection = FlyConnection.resolve(token=outputs.get("controlPlaneToken") or None,
                                               api_base_url=cfg.get("api_base_url") or None,
                                               flaps_base_url=cfg.get("flaps_base_url") or None)
        except FlyError as exc:
            print(f"validate: {exc}", file=sys.stderr)
            return 2
        report = validate_slice(outputs, connection)
        print(report.render())
        return 0 if report.ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
