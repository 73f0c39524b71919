"""Slice operations outside `pulumi up`: `python -m ops validate ...` (phase 6, the control plane's checks:
the same as `python -m controlplane validate ...`), `python -m ops handover ...` (phase 7), `python -m ops cost ...`
(the Fly bill, now and after a preview)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fly import FlyConnection, FlyError

from .handover import write_handover
from .stack import REPO, secret_output_names, stack_outputs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cycle"]:  # its own options (ops/cycle.py); imported only when used
        from .cycle import main as cycle_main
        return cycle_main(argv[1:])
    if argv[:1] == ["e2e"]:  # the scenario runner (ops/e2e/runner.py)
        from .e2e.runner import main as e2e_main
        return e2e_main(argv[1:])
    if argv[:1] == ["cost"]:  # its own options (ops/cost.py)
        from .cost import main as cost_main
        return cost_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="phase 6: validate a slice with its org token")
    source = v.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read the manifest from this stack's outputs")
    source.add_argument("--manifest-env", metavar="VAR", help="read the manifest (JSON) from this variable")
    v.add_argument("--work-dir", type=Path, default=None, help="the project directory (default: this repo)")
    sub.add_parser("cycle", help="the ephemeral end-to-end cycle of a throwaway slice (cycle --help)")
    sub.add_parser("e2e", help="the validation guide's scenarios with faults injected, evidence archived (e2e --help)")
    sub.add_parser("cost", help="the slice's monthly Fly cost now and after a preview (cost --help)")
    h = sub.add_parser("handover", help="phase 7: write artifacts/provisioning/<stack>-<timestamp>.json")
    h.add_argument("--stack", required=True)
    h.add_argument("--work-dir", type=Path, default=None, help="the project directory (default: this repo)")
    h.add_argument("--out", type=Path, default=REPO / "artifacts" / "provisioning")
    args = parser.parse_args(argv)

    if args.command == "validate":
        from controlplane.__main__ import main as controlplane_main

        source = ["--stack", args.stack] if args.stack else ["--manifest-env", args.manifest_env]
        return controlplane_main(["validate", *source, *(["--work-dir", str(args.work_dir)] if args.work_dir else [])])
    outputs = stack_outputs(args.stack, args.work_dir)
    cfg = outputs.get("fly") or {}
    try:
        # The slice's own org token when it has one (the narrowest scope that works), else the
        # deployer's FLY_API_TOKEN.
        connection = FlyConnection.resolve(token=outputs.get("controlPlaneToken") or None,
                                           api_base_url=cfg.get("api_base_url") or None,
                                           flaps_base_url=cfg.get("flaps_base_url") or None)
    except FlyError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2

    print(write_handover(args.stack, outputs, secret_output_names(args.stack, args.work_dir), connection, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
