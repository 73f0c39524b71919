"""The Fly bill of a Pulumi stack of this package's resources, as it stands and as a preview would leave it.

``fly.pricing`` prices ``Billable`` items; this module reads them from a stack's state (``state_inputs``) and a
preview's engine events (``preview_inputs``), and renders the comparison as data for a caller that answers
in JSON (``cost_json``: the control plane's dry runs). ``python -m ops cost`` renders the same comparison as a
table. It knows the shapes of Pulumi's state and events and of ``fly.providers``' resources, nothing else, and
imports no Pulumi module (a step's op is read by its value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .pricing import Billable, Comparison, Estimate, PriceTable, billable_from_pulumi, compare, estimate

Resources = dict[str, tuple[str, dict[str, Any]]]  # urn -> (type, inputs)

# Steps after which the resource is gone from the stack; steps that leave it as it was (the old half of a
# replace); every other step leaves its `new` inputs.
_GONE = {"delete", "discard"}
_KEEPS_OLD = {"delete-replaced", "discard-replaced", "remove-pending-replace"}


def state_inputs(deployment: Mapping[str, Any]) -> Resources:
    """urn -> (type, inputs) of a state's resources (``stack.export_stack().deployment``)."""
    return {r["urn"]: (r["type"], dict(r.get("inputs") or {})) for r in deployment.get("resources") or []
            if not r.get("delete")}


def preview_inputs(state: Mapping[str, tuple[str, dict[str, Any]]], events: Iterable[Any]) -> Resources:
    """What a preview would leave: the state, with each step's new inputs, less what it deletes. ``events``:
    the Automation API's ``EngineEvent``s of the preview (``on_event``)."""
    after = dict(state)
    for event in events:
        pre = getattr(event, "resource_pre_event", None)
        if pre is None:
            continue
        step = pre.metadata
        op = str(getattr(step.op, "value", step.op))
        if op in _GONE:
            after.pop(step.urn, None)
        elif op not in _KEEPS_OLD:
            chosen = step.new or step.old
            if chosen is not None:
                after[step.urn] = (step.type, dict(chosen.inputs or {}))
    return after


def preview_state(events: Iterable[Any]) -> Resources:
    """The stack as the preview found it (each step's old inputs), for a caller that has only the events: a
    full preview sends a step for every resource of the stack, ``same`` ones included."""
    found: Resources = {}
    for event in events:
        pre = getattr(event, "resource_pre_event", None)
        if pre is not None and pre.metadata.old is not None:
            found[pre.metadata.urn] = (pre.metadata.old.type or pre.metadata.type, dict(pre.metadata.old.inputs or {}))
    return found


def billables(resources: Mapping[str, tuple[str, dict[str, Any]]]) -> list[Billable]:
    return [b for urn, (type_, inputs) in resources.items() if (b := billable_from_pulumi(type_, urn, inputs))]


def preview_comparison(events: Iterable[Any], state: Resources | None = None,
                       table: PriceTable | None = None) -> Comparison:
    """The stack's cost now (``state``, by default as the preview found it) against what the preview's
    ``events`` would leave."""
    events = list(events)
    state = preview_state(events) if state is None else state
    table = table or PriceTable.load()
    return compare(estimate(billables(state), table), estimate(billables(preview_inputs(state, events)), table))


def _usd(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.01")))


def _total(e: Estimate) -> dict[str, Any]:
    return {"usd": _usd(e.total), "complete": e.complete, "unknown": [line.label for line in e.unknown]}


def cost_json(c: Comparison) -> dict[str, Any]:
    """The comparison as JSON-able data: dollars a month as strings of cents ("1.50"); a price the table lacks
    is ``null`` and named in ``unknown`` with the reason, never 0; a total is then the known part, said by
    ``complete: false``."""
    basis = {line.key: line.basis for line in (*c.before.lines, *c.after.lines)}
    unknown = {line.key: line for line in (*c.before.unknown, *c.after.unknown)}
    resources = [{"resource": ch.label,
                  "before": _usd(ch.before) if ch.present_before else None,
                  "after": _usd(ch.after) if ch.present_after else None,
                  "delta": _usd(ch.delta), "present_before": ch.present_before, "present_after": ch.present_after,
                  "basis": basis[ch.key]}
                 for ch in c.changes]
    return {"currency": "USD", "period": "month",
            "before": _total(c.before), "after": _total(c.after),
            "delta": {"usd": _usd(c.delta), "complete": c.complete},
            "resources": resources,
            "unknown": [{"resource": line.label, "reason": line.basis.removeprefix("unknown: ")}
                        for line in unknown.values()],
            "assumes": "machines started all month; Fly's free allowances not subtracted; prices from "
                       "fly/pricing.json (each with its source and the day it was read)"}
