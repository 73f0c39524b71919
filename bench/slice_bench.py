"""Benchmark: a whole slice on flysim, through the real engine. Timings live here, not in tests.

    scripts/bench [--latency zero|fast|realistic] [--rounds N]

Reports wall time of a fresh `up`, a no-change `preview` and `up`, and `destroy`, and the API calls of
each (total, mutating, 429s), so a change to the graph or the client shows its cost. Run it on a quiet
machine: it measures the critical path of the runbook (NFS gate, router, exec, releases) plus the
engine's overhead.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flysim.testing import FlysimServer  # noqa: E402
from tests.e2e.harness import make_stack  # noqa: E402


def _calls_summary(calls: list[dict]) -> dict:
    return {"calls": len(calls), "mutating": sum(1 for c in calls if c.get("mutating")),
            "rate_limited": sum(1 for c in calls if c["status"] == 429),
            "top": collections.Counter(c["operation"] for c in calls).most_common(5)}


def run(latency: str, pulumi_bin: Path) -> dict:
    results: dict[str, dict] = {}
    with FlysimServer(orgs=["personal"], latency=latency) as flysim, tempfile.TemporaryDirectory() as tmp:
        s = make_stack(Path(tmp), pulumi_bin, flysim.url, flysim.token)
        for step in ("up", "preview", "up_again", "destroy"):
            flysim.clear_calls()
            started = time.perf_counter()
            {"up": s.up, "preview": s.preview, "up_again": s.up, "destroy": s.destroy}[step]()
            results[step] = {"seconds": round(time.perf_counter() - started, 2), **_calls_summary(flysim.calls())}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", default="realistic", choices=["zero", "fast", "realistic"])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    found = os.environ.get("ARTIFACT_PULUMI_BIN") or str(Path(shutil.which("pulumi") or "").parent)
    rounds = [run(args.latency, Path(found)) for _ in range(args.rounds)]
    print(json.dumps({"latency": args.latency, "rounds": rounds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
