"""Benchmark: whole slices on flysim through the real engine, and the ratios that matter, in one run.
Timings live here, never in tests.

    scripts/bench [--latency zero|fast|realistic] [--only slice,sequential,scale,customer] [--scale 1,4,8,16]
                  [--repeat 5] [--backend postgres://...] [--json PATH]

Sections (all by default):
  slice       one slice: a fresh `up`, a no-change `preview` and `up`, `destroy`: wall time and API calls
              (total, mutating, 429s, busiest operations), calls per machine started; and the critical path
              of the `up`, computed from the dependency graph the engine recorded and flysim's latency
              profile (bench/critical_path.py), with the ratio of the real `up` to it: the median of
              `--repeat` fresh ups (each destroyed after), with its range
  sequential  the runbook strictly in sequence through the project's Fly client (bench/runbook.py), and its
              ratio to the critical path (needs `slice` in the same run for the ratio)
  scale       N slices brought up at once in one org on one flysim, rate limits on: how many converge, wall
              time, 429s, peak memory of this process and everything it started; then all destroyed. With
              `--backend postgres://...` each N runs on the file backend and then on that one (all N slices
              in one table there), with the difference in wall time: the backend's cost
  customer    the control plane's `infra_ensure_app` of a new customer (median of 3) against its own critical
              path, a no-change call, a dry run, and 10 new customers at once (bench/customer_bench.py)
Every section starts a fresh flysim (rate limits on, as on Fly). A table goes to stdout, everything to
the JSON file (default artifacts/bench/slice-bench-<time>.json).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script (scripts/bench): the project's packages
    sys.path.insert(0, str(REPO))

from bench import customer_bench  # noqa: E402
from bench.critical_path import critical_path  # noqa: E402
from bench.runbook import run_sequential  # noqa: E402
from flysim.latency import get_profile  # noqa: E402
from flysim.testing import FlysimServer  # noqa: E402
from fly import FlyConnection  # noqa: E402
from enginejob.backend_lock import connect, is_postgres, libpq_conninfo  # noqa: E402
from ops.workspace import SliceStack, find_pulumi_bin, local_slice_stack  # noqa: E402

ORG = "personal"
SECTIONS = ("slice", "sequential", "scale", "customer")
# The calls it takes to bring a machine to `started` (the exit-event read of a release machine is not one).
MACHINE_START_OPERATIONS = {"Machines_list", "Machines_create", "Machines_wait", "Machines_show", "Machines_start",
                            "Machines_update", "Machines_create_lease", "Machines_release_lease"}


def calls_summary(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"calls": len(calls), "mutating": sum(1 for c in calls if c.get("mutating")),
            "rate_limited": sum(1 for c in calls if c["status"] == 429),
            "top": collections.Counter(c["operation"] for c in calls).most_common(5)}


def machine_calls(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The calls spent bringing machines to `started`, per machine created. A listing of an app's machines
    counts only before that app's last machine create (an adoption look-up); later ones are phase 6's."""
    def app_of(call: dict[str, Any]) -> str:
        parts = call["path"].split("/")
        return parts[3] if len(parts) > 3 and parts[1:3] == ["v1", "apps"] else ""

    last_create = {app_of(c): i for i, c in enumerate(calls) if c["operation"] == "Machines_create"}
    used: collections.Counter[str] = collections.Counter()
    for i, c in enumerate(calls):
        if c["operation"] not in MACHINE_START_OPERATIONS:
            continue
        if c["operation"] == "Machines_list" and i > last_create.get(app_of(c), -1):
            continue
        used[c["operation"]] += 1
    started = sum(1 for c in calls if c["operation"] == "Machines_create" and 200 <= c["status"] < 300)
    total = sum(used.values())
    return {"machines_started": started, "calls": total, "per_machine": round(total / started, 2) if started else None,
            "by_operation": dict(used.most_common())}


def _timed(step: Any) -> tuple[float, bool, str]:
    started = time.perf_counter()
    try:
        step()
        return time.perf_counter() - started, True, ""
    except Exception as exc:  # noqa: BLE001 - a failed step is a result, reported with its cause
        return time.perf_counter() - started, False, error_summary(exc)


def error_summary(exc: Exception) -> str:
    """The engine's first `error:` line (the resource's own, not "update failed"), with the slice's name
    generalised so that the same failure of several slices counts once."""
    lines = [line.strip() for line in str(exc).splitlines() if "error:" in line and "update failed" not in line]
    lines.sort(key=lambda line: not line.startswith("error:"))  # the diagnostic itself before progress lines
    text = lines[0] if lines else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.removeprefix("error: ").removeprefix("Exception calling application: ")
    return re.sub(r"\bscale\d+-\d+(-[a-z-]+)?", "<slice>", text)[:240]


# -- one slice -------------------------------------------------------------------------------------

def bench_slice(latency: str, pulumi_bin: Path, repeat: int = 5) -> dict[str, Any]:
    """One slice: up, no-change preview and up, destroy; then ``repeat - 1`` more fresh ups (each destroyed
    after), so the ratio to the critical path is a median of ``repeat`` ups, with its range."""
    profile = get_profile(latency)
    result: dict[str, Any] = {}
    with FlysimServer(orgs=[ORG], latency=latency) as flysim, tempfile.TemporaryDirectory() as tmp:
        s = local_slice_stack(Path(tmp), pulumi_bin, flysim.url, flysim.token, "bench")
        # The fresh `up` is the engine's command as CI runs it; the Automation API's own reads after an
        # `up` (`stack output`, `stack history`, for its result object) are timed apart.
        steps = {"up": s.up_as_cli, "preview": s.preview, "up_again": s.up, "destroy": s.destroy}
        for name, step in steps.items():
            flysim.clear_calls()
            seconds, ok, error = _timed(step)
            calls = flysim.calls()
            result[name] = {"seconds": round(seconds, 2), "ok": ok, **calls_summary(calls),
                            **({"error": error} if error else {})}
            if name == "up":
                result["machine_calls"] = machine_calls(calls)
                if ok:
                    result["critical_path"] = critical_path(s.resources(), profile).as_dict()
                    reads, _, _ = _timed(lambda: (s.stack.outputs(), s.stack.info()))
                    result["automation_api_reads_after_up"] = round(reads, 2)
            if not ok and name in ("up", "destroy"):
                break
        ups = [result["up"]["seconds"]] if result["up"]["ok"] else []
        for _ in range(repeat - 1 if result.get("destroy", {}).get("ok") else 0):
            seconds, ok, _ = _timed(s.up_as_cli)
            if not ok or not _timed(s.destroy)[1]:
                break
            ups.append(round(seconds, 2))
        path = result.get("critical_path")
        if ups and path and path["seconds"]:
            result["up_runs"] = ups
            result["up_ratio"] = round(statistics.median(ups) / path["seconds"], 2)
            result["up_ratio_range"] = [round(min(ups) / path["seconds"], 2), round(max(ups) / path["seconds"], 2)]
        with contextlib.suppress(Exception):  # best effort: the temp backend goes anyway
            s.remove(force=True)
    return result


# -- the runbook in sequence --------------------------------------------------------------------------

def bench_sequential(latency: str) -> dict[str, Any]:
    with FlysimServer(orgs=[ORG], latency=latency) as flysim:
        connection = FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                           environ={})
        try:
            return run_sequential(connection, org=ORG, prefix="seq")
        except Exception as exc:  # noqa: BLE001
            return {"seconds": None, "error": str(exc)[:300]}


# -- many slices at once -----------------------------------------------------------------------------

class PeakMemory:
    """Peak resident memory of this process and all its descendants (engines, language hosts, providers),
    sampled from /proc."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        root = os.getpid()
        while not self._stop.wait(self.interval):
            parents: dict[int, int] = {}
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
            tree, grew = {root}, True
            while grew:
                more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
                tree |= more
                grew = bool(more)
            total = 0
            for pid in tree:
                try:
                    total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
                except (OSError, ValueError, IndexError):
                    continue
            self.peak_bytes = max(self.peak_bytes, total)


def bench_scale(n: int, latency: str, pulumi_bin: Path, backend_url: str | None = None) -> dict[str, Any]:
    """N slices at once on one flysim; on ``backend_url`` when given (a team's postgres://), else each on a
    file backend of its own."""
    with FlysimServer(orgs=[ORG], latency=latency, rate_limit=True) as flysim, \
            tempfile.TemporaryDirectory() as tmp:
        stacks: list[SliceStack] = [local_slice_stack(Path(tmp) / f"s{i}", pulumi_bin, flysim.url, flysim.token,
                                                      f"scale{n}-{i}", backend_url=backend_url) for i in range(n)]
        flysim.clear_calls()
        with PeakMemory() as memory, concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            started = time.perf_counter()
            ups = list(pool.map(lambda s: _timed(s.up), stacks))
            wall = time.perf_counter() - started
        calls = flysim.calls()
        errors = collections.Counter(error for _, ok, error in ups if not ok)
        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            downs = list(pool.map(lambda s: _timed(s.destroy), stacks))
        left = [a["name"] for a in flysim.state()["apps"] if a["name"].startswith(f"scale{n}-")]
        for s in stacks:
            with contextlib.suppress(Exception):  # best effort: a temp file backend goes anyway
                s.remove(force=True, remove_backups=True)
        rows_left = stack_rows(backend_url, [s.stack.name for s in stacks]) if backend_url else []
    return {"n": n, "backend": backend_kind(backend_url), **({"state_rows_left": rows_left} if backend_url else {}),
            "converged": sum(1 for _, ok, _ in ups if ok), "wall_seconds": round(wall, 2),
            "slowest_up_seconds": round(max(seconds for seconds, _, _ in ups), 2),
            "calls": len(calls), "rate_limited": sum(1 for c in calls if c["status"] == 429),
            "rate_limited_by_operation": dict(collections.Counter(
                c["operation"] for c in calls if c["status"] == 429).most_common()),
            "peak_memory_mb": round(memory.peak_bytes / 2**20), "errors": dict(errors),
            "destroyed": sum(1 for _, ok, _ in downs if ok), "apps_left": left}


def backend_kind(backend_url: str | None) -> str:
    return backend_url.split("://", 1)[0] if backend_url else "file"


def stack_rows(backend_url: str, stacks: list[str]) -> list[str]:
    """The keys of a postgres:// backend's state rows that still name one of ``stacks`` (none once they are
    removed with their backups)."""
    if not is_postgres(backend_url):
        return []
    _, table = libpq_conninfo(backend_url)
    with connect(backend_url) as conn:
        keys = [row[0] for row in conn.execute(f"SELECT key FROM {table}").fetchall()]  # noqa: S608 - our own URL
    return sorted(k for k in keys if any(f"/{name}." in k or f"/{name}/" in k for name in stacks))


# -- report -----------------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip())
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "load_before": [round(x, 2) for x in load] if load else None,
            "commit": commit + ("+dirty" if dirty else "")}


def render(report: dict[str, Any]) -> str:
    lines = [f"slice benchmark, flysim latency {report['latency']}, commit {report['machine']['commit']}, "
             f"{report['machine']['cores']} cores ({report['machine']['cpu']}), load before {report['machine']['load_before']}"]
    single = report.get("slice")
    if single:
        lines.append(f"{'step':<22}{'seconds':>9}{'calls':>7}{'mutating':>10}{'429s':>6}  busiest")
        for step in ("up", "preview", "up_again", "destroy"):
            r = single.get(step)
            if r:
                top = ", ".join(f"{op} {n}" for op, n in r["top"][:3])
                mark = "" if r["ok"] else f"  FAILED: {r.get('error', '')}"
                lines.append(f"{step:<22}{r['seconds']:>9.2f}{r['calls']:>7}{r['mutating']:>10}{r['rate_limited']:>6}  {top}{mark}")
        path = single.get("critical_path")
        if path:
            lines.append(f"{'critical path':<22}{path['seconds']:>9.2f}  " + " > ".join(
                f"{s['resource']} {s['seconds']:.2f}" for s in path["steps"]))
            if path["unclassified"]:
                lines.append(f"  (costed as one round trip, kind unknown: {', '.join(path['unclassified'])})")
        if single.get("up_ratio") is not None:
            low, high = single["up_ratio_range"]
            lines.append(f"{'up / critical path':<22}{single['up_ratio']:>9.2f}  (median of {len(single['up_runs'])} fresh ups: "
                         f"{', '.join(f'{x:.2f}' for x in single['up_runs'])} s, ratios {low:.2f} to {high:.2f}; "
                         "up is `pulumi up --yes --skip-preview`; the Automation API's reads after it add "
                         f"{single.get('automation_api_reads_after_up', 0):.2f} s)")
        mc = single.get("machine_calls")
        if mc:
            lines.append(f"{'calls per machine':<22}{mc['per_machine'] or 0:>9.2f}  ({mc['calls']} calls for "
                         f"{mc['machines_started']} machines: " + ", ".join(f"{k} {v}" for k, v in mc["by_operation"].items()) + ")")
    seq = report.get("sequential")
    if seq:
        ratio = report.get("sequential_ratio")
        lines.append(f"{'sequential runbook':<22}{seq['seconds'] if seq['seconds'] is not None else float('nan'):>9.2f}"
                     + (f"  ({ratio:.2f} x the critical path)" if ratio else "") + (f"  FAILED: {seq['error']}" if seq.get("error") else "")
                     + ("  (its phase 6 validation FAILED)" if seq.get("validation_ok") is False else ""))
    scale = report.get("scale")
    if scale:
        lines.append(f"{'slices at once':<16}{'backend':>9}{'converged':>10}{'wall s':>9}{'slowest s':>10}{'calls':>7}"
                     f"{'429s':>6}{'peak MB':>9}  errors")
        for r in scale:
            errors = "; ".join(f"{n}x {e}" for e, n in r["errors"].items())
            lines.append(f"{'N = ' + str(r['n']):<16}{r.get('backend', 'file'):>9}"
                         f"{str(r['converged']) + '/' + str(r['n']):>10}{r['wall_seconds']:>9.2f}"
                         f"{r['slowest_up_seconds']:>10.2f}{r['calls']:>7}{r['rate_limited']:>6}{r['peak_memory_mb']:>9}  {errors}"
                         + (f"  LEFT: {', '.join(r['apps_left'])}" if r["apps_left"] else "")
                         + (f"  STATE ROWS LEFT: {', '.join(r['state_rows_left'])}" if r.get("state_rows_left") else ""))
        for cost in report.get("backend_cost") or []:
            lines.append(f"{'  backend cost':<16}{cost['backend']:>9}  N = {cost['n']}: wall {cost['wall_delta_seconds']:+.2f} s, "
                         f"slowest up {cost['slowest_delta_seconds']:+.2f} s against the file backend")
    if report.get("customer"):
        lines += customer_bench.render(report["customer"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", default="realistic", choices=["zero", "fast", "realistic"])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--scale", default="1,4,8,16", help="the N of the scale curve (default 1,4,8,16)")
    parser.add_argument("--backend", default=None, metavar="URL",
                        help="scale section: run the curve on this backend too (a team's postgres://...; libpq's "
                             "PG* variables apply), beside the file backend, and report the difference")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON report")
    parser.add_argument("--repeat", type=int, default=5,
                        help="fresh ups of one slice whose median gives the ratio to the critical path (default 5)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := sorted(set(sections) - set(SECTIONS)):
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    try:
        sizes = [int(n) for n in args.scale.split(",") if n.strip()]
        assert sizes and all(n >= 1 for n in sizes)
    except (ValueError, AssertionError):
        parser.error(f"--scale: positive whole numbers separated by commas (got {args.scale!r})")
    if args.repeat < 1:
        parser.error(f"--repeat: a positive whole number (got {args.repeat})")
    if args.backend and not (args.backend.startswith("file://") or is_postgres(args.backend)):
        parser.error(f"--backend: a postgres:// (or file://) URL (got {args.backend.split('://', 1)[0]}://...)")
    pulumi_bin = find_pulumi_bin()
    if pulumi_bin is None and ({"slice", "scale", "customer"} & set(sections)):
        parser.error("the Pulumi engine is missing: run through scripts/bench (it sources scripts/setup.sh)")

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report: dict[str, Any] = {"latency": args.latency, "started": stamp, "machine": machine_info()}
    if "slice" in sections:
        report["slice"] = bench_slice(args.latency, pulumi_bin, repeat=args.repeat)
    if "sequential" in sections:
        report["sequential"] = bench_sequential(args.latency)
        path = (report.get("slice") or {}).get("critical_path")
        if path and report["sequential"].get("seconds"):
            report["sequential_ratio"] = round(report["sequential"]["seconds"] / path["seconds"], 2)
    if "scale" in sections:
        report["scale"] = []
        for n in sizes:
            file_run = bench_scale(n, args.latency, pulumi_bin)
            report["scale"].append(file_run)
            if args.backend:
                other = bench_scale(n, args.latency, pulumi_bin, backend_url=args.backend)
                report["scale"].append(other)
                report.setdefault("backend_cost", []).append(
                    {"n": n, "backend": other["backend"],
                     "wall_delta_seconds": round(other["wall_seconds"] - file_run["wall_seconds"], 2),
                     "slowest_delta_seconds": round(other["slowest_up_seconds"] - file_run["slowest_up_seconds"], 2)})
    if "customer" in sections:
        report["customer"] = customer_bench.bench_customers(args.latency, pulumi_bin)
    print(render(report))
    out = args.json or REPO / "artifacts" / "bench" / f"slice-bench-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
