"""`python -m ops cost`: the monthly Fly cost of a stack as it stands (its state) and as a preview would leave
it, per resource and in total, with the delta; with `--policy-pack`, the same preview runs the policy pack, and
`--markdown FILE` writes the short table the PR preview comment shows (policy violations and the cost delta).

The prices and the arithmetic are fly.pricing's, reading a stack's resources and a preview's steps is
fly.stack_cost's (one estimate for every caller: the control plane's dry runs use the same); this module runs
the preview and renders.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pulumi import automation as auto
from pulumi.automation.events import EngineEvent

from fly.pricing import Comparison, Estimate, PriceTable, compare, estimate
from fly.stack_cost import billables, preview_inputs, state_inputs

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    resource: str  # type::name, the resource's own type
    message: str


def violations(events: Iterable[EngineEvent]) -> list[Violation]:
    found = []
    for event in events:
        if (p := event.policy_event) is not None:
            parts = (p.resource_urn or "").split("::")
            type_, name = (parts[-2], parts[-1]) if len(parts) >= 2 else ("", "")
            # The engine sends the policy's description, a line break, then the violation itself.
            message = p.message.strip().split("\n", 1)[-1]
            found.append(Violation(p.policy_name, p.enforcement_level,
                                   f"{type_.split('$')[-1].removeprefix('pulumi-python:dynamic/')}::{name}",
                                   " ".join(message.split())))
    return found


# ---- rendering ----

def money(value: Decimal | None) -> str:
    return "unknown" if value is None else f"${value.quantize(Decimal('0.01'))}"


def signed(value: Decimal | None) -> str:
    if value is None:
        return "unknown"
    q = value.quantize(Decimal("0.01"))
    return f"+${q}" if q > 0 else (f"-${-q}" if q < 0 else "$0.00")


def total_text(e: Estimate) -> str:
    return money(e.total) if e.complete else f"at least {money(e.total)} ({len(e.unknown)} unknown)"


def render_text(c: Comparison, *, previewed: bool = True) -> str:
    """A table per resource: now, after the preview and the delta (``previewed=False``: now only)."""
    rows = [("resource", "now", "after preview", "delta")]
    for ch in c.changes:
        rows.append((ch.label, money(ch.before) if ch.present_before else "-",
                     money(ch.after) if ch.present_after else "-", signed(ch.delta)))
    rows.append(("total a month", total_text(c.before), total_text(c.after),
                 signed(c.delta) + ("" if c.complete else " (known part)")))
    if not previewed:
        rows = [row[:2] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    unknown = {line.basis for line in (*c.before.unknown, *c.after.unknown)}
    notes = [f"unknown prices: {u.removeprefix('unknown: ')}" for u in sorted(unknown)]
    return "\n".join(lines + notes)


def render_markdown(c: Comparison, found: list[Violation], *, preview_failed: bool) -> str:
    """One short table: each mandatory violation, advisories counted per policy, then the cost."""
    mandatory = [v for v in found if v.level == "mandatory"]
    advisory: dict[str, int] = {}
    for v in found:
        if v.level == "advisory":
            advisory[v.policy] = advisory.get(v.policy, 0) + 1
    rows = ["| | Check | Result |", "|---|---|---|"]
    for v in mandatory:
        first = re.split(r"(?<=\.) |; ", v.message, maxsplit=1)[0]  # the first sentence; the fix is in the log
        rows.append(f"| ❌ | `{v.policy}` | {v.resource}: {first} |")
    for policy, count in sorted(advisory.items()):
        rows.append(f"| ⚠️ | `{policy}` | {count} resource{'s' if count != 1 else ''} (advisory) |")
    if not found:
        rows.append("| ✅ | policies | no violations |")
    cost = f"{total_text(c.before)} → {total_text(c.after)}, {signed(c.delta)} a month"
    if not c.complete:
        what: dict[str, int] = {}
        for line in c.after.unknown or c.before.unknown:
            kind = line.label.split(" ")[0]
            what[kind] = what.get(kind, 0) + 1
        cost += ("; no price yet for " + ", ".join(f"{n} {k}{'es' if k.endswith('s') and n > 1 else 's' if n > 1 else ''}"
                                                  for k, n in sorted(what.items()))
                 + " (fly/pricing.json has only the figures Fly publishes; `python -m ops cost` says which)")
    rows.append(f"| 💲 | Fly cost | {cost} |")
    head = "### Policy and cost\n\n" + ("**The preview fails: mandatory policy violations.**\n\n" if preview_failed
                                        else "")
    return head + "\n".join(rows) + "\n"


# ---- the command ----

def run_preview(stack: auto.Stack, policy_pack: Path | None) -> tuple[list[EngineEvent], bool]:
    events: list[EngineEvent] = []
    try:
        stack.preview(on_event=events.append, policy_packs=[str(policy_pack)] if policy_pack else None,
                      color="never", diff=True, on_output=lambda line: print(line, file=sys.stderr))
        return events, False
    except auto.CommandError:
        if not any(e.policy_event is not None and e.policy_event.enforcement_level == "mandatory" for e in events):
            raise
        print("cost: the preview fails on mandatory policy violations (listed above)", file=sys.stderr)
        return events, True


def _engine_error(exc: Exception) -> str:
    """The engine's own `error:` lines of a failed command, on one line (not the Automation API's dump)."""
    text = str(exc)
    errors = [m.strip() for m in re.findall(r"error: [^\n]+", text)]
    return " ".join(errors or [" ".join(text.split())])[:800]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--work-dir", type=Path, default=REPO, help="the project directory (default: this repo)")
    parser.add_argument("--preview", action="store_true", help="also estimate what a preview would leave")
    parser.add_argument("--policy-pack", type=Path, default=None, help="run this policy pack in the preview")
    parser.add_argument("--markdown", type=Path, default=None, help="write the PR comment's table here")
    args = parser.parse_args(argv)
    try:
        table = PriceTable.load()
        stack = auto.select_stack(stack_name=args.stack, work_dir=str(args.work_dir))
        state = state_inputs(stack.export_stack().deployment or {})
    except (auto.CommandError, ValueError) as exc:
        print(f"cost: {_engine_error(exc)}", file=sys.stderr)
        return 2
    before = estimate(billables(state), table)
    events: list[EngineEvent] = []
    failed = False
    after = before
    if args.preview or args.policy_pack or args.markdown:
        try:
            events, failed = run_preview(stack, args.policy_pack)
        except auto.CommandError as exc:
            print(f"cost: the preview failed: {_engine_error(exc)}", file=sys.stderr)
            return 2
        after = estimate(billables(preview_inputs(state, events)), table)
    comparison = compare(before, after)
    print(render_text(comparison, previewed=bool(args.preview or args.policy_pack or args.markdown)))
    if args.markdown:
        args.markdown.write_text(render_markdown(comparison, violations(events), preview_failed=failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
