"""What Fly resources cost a month, from Fly's published prices (``pricing.json`` beside this file).

One estimate for every caller: ``python -m ops cost`` (a stack and its preview), the PR preview comment, the
control plane's dry runs and the self-hosted wizard's plan page. A caller describes what it has or plans as
``Billable`` items (``billable_from_pulumi`` reads them from a Pulumi state or preview), then::

    table = PriceTable.load()
    now, then = estimate(current, table), estimate(planned, table)
    now.total, then.total, then.unknown           # Decimal dollars a month; lines whose price is unknown
    compare(now, then)                            # per item: before, after, delta

A price the table lacks (a machine size, memory amount or region Fly's matrix doesn't list) makes the line
``usd=None`` with the reason, and the estimate's ``unknown`` lists it: the total is then a lower bound, said
so by ``Estimate.complete`` being False. Nothing is ever guessed or counted as zero.

Assumptions, said once: a machine is priced as started all month (the slice's always-on services are; a
machine that auto-stops costs less); Fly's free allowances (an organization's first 10 certificates) are not
subtracted, since they depend on the rest of the organization.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).with_name("pricing.json")
FLY_TYPE = "pulumi-python:dynamic/fly:"
# The engine's placeholder for a value a preview doesn't know yet.
UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
# Fly resources Fly's price list does not charge for.
NOT_BILLED = frozenset({"App", "AppSecrets", "OrgToken", "Organization", "ExecCheck", "MachineSweeper",
                        "MachineFile", "ReleaseCommand"})


class PriceTableError(ValueError):
    """pricing.json is malformed: a price without its source, date or quote."""


@dataclass(frozen=True)
class Price:
    usd: Decimal
    source_url: str
    read: str
    quote: str


@dataclass(frozen=True)
class PriceTable:
    prices: Mapping[str, Price]
    # region -> (preset, memory MB) -> a started Machine's monthly price there, as Fly's matrix for that region
    # renders it (the region's markup included; Fly publishes no multiplier as a figure, only these prices).
    machines: Mapping[str, Mapping[tuple[str, int], Price]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = PRICES_FILE) -> PriceTable:
        return cls.parse(json.loads(path.read_text()))

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> PriceTable:
        sources = {k: v["url"] for k, v in (data.get("sources") or {}).items()}

        def cited(key: str, entry: Mapping[str, Any], *fields: str) -> None:
            missing = [f for f in (*fields, "source", "read", "quote") if not entry.get(f)]
            if missing or entry["source"] not in sources:
                raise PriceTableError(f"pricing.json: {key} needs {', '.join(fields) or 'prices'}, a source listed "
                                      f"under sources, the day it was read and the quote (missing: "
                                      f"{', '.join(missing) or 'source'})")

        def price(key: str, entry: Mapping[str, Any]) -> Price:
            cited(key, entry, "usd")
            return Price(Decimal(str(entry["usd"])), sources[entry["source"]], str(entry["read"]), str(entry["quote"]))

        machines: dict[str, dict[tuple[str, int], Price]] = {}
        if matrix := data.get("machines"):
            cited("machines", matrix, "prices")
            for region, cells in matrix["prices"].items():
                for cell, usd in cells.items():
                    preset, _, memory = cell.partition("@")
                    machines.setdefault(region, {})[(preset, int(memory))] = Price(
                        Decimal(str(usd)), sources[matrix["source"]], str(matrix["read"]), str(matrix["quote"]))
        return cls(prices={k: price(k, e) for k, e in (data.get("prices") or {}).items()}, machines=machines)


@dataclass(frozen=True)
class Billable:
    """One thing Fly bills for. ``kind``: machine (region, guest), volume (size_gb), ip (ip_type),
    certificate (hostname)."""

    key: str  # stable across before/after (a Pulumi URN, or the caller's own name)
    label: str  # what a person reads: "machine org1-nfs-0 (org1-nfs)"
    kind: str
    region: str | None = None
    guest: Mapping[str, Any] | None = None
    size_gb: int | None = None
    ip_type: str | None = None
    unknown: str | None = None  # why it can't be priced yet (a preview's unknown value)


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    usd: Decimal | None
    basis: str  # the arithmetic, or why the price is unknown


@dataclass(frozen=True)
class Estimate:
    lines: tuple[Line, ...]

    @property
    def total(self) -> Decimal:
        """The known part: a lower bound unless ``complete``."""
        return sum((line.usd for line in self.lines if line.usd is not None), Decimal("0"))

    @property
    def unknown(self) -> tuple[Line, ...]:
        return tuple(line for line in self.lines if line.usd is None)

    @property
    def complete(self) -> bool:
        return not self.unknown


_COUNT = {1: "", 2: "two ", 3: "three ", 4: "four "}
_NOUN = {"machine": "machine", "volume": "volume", "ip": "address", "certificate": "certificate"}


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def in_words(items: Sequence[Billable], table: PriceTable | None = None) -> str:
    """What ``items`` add to the Fly bill a month, as a plan page says it: the known part and what it is, and
    what has no price in the table, said in words (never counted as $0)."""
    result = estimate(items, table)
    by_key = {item.key: item for item in items}
    text = f"About ${result.total.quantize(Decimal('0.01'))} a month on your Fly bill"
    paid = [by_key[line.key].label for line in result.lines if line.usd]
    if paid:
        text += f" ({_and(paid)})"
    kinds = Counter("Flycast address" if by_key[line.key].ip_type == "private_v6" else _NOUN[by_key[line.key].kind]
                    for line in result.unknown)
    if kinds:
        many = sum(kinds.values()) > 1
        text += ", plus " + _and([f"the {_COUNT.get(n, f'{n} ')}{noun}{'es' if n > 1 and noun.endswith('s') else 's' if n > 1 else ''}"
                                  for noun, n in kinds.items()]) + \
            f", whose price{'s' if many else ''} {'are' if many else 'is'}n't in our price table"
    running = ". Machines are counted as running all month." if any(item.kind == "machine" for item in items) else "."
    return text + running


def preset_name(guest: Mapping[str, Any]) -> str:
    kind = str(guest.get("cpu_kind") or "shared")
    return f"{'shared-cpu' if kind == 'shared' else kind}-{int(guest.get('cpus') or 1)}x"


def _machine(item: Billable, table: PriceTable) -> Line:
    guest = item.guest or {}
    size = preset_name(guest)
    memory = int(guest.get("memory_mb") or 0)
    label = f"{item.label}: {size}, {memory} MB, {item.region}"
    region = table.machines.get(item.region or "")
    if region is None:
        return Line(item.key, label, None, f"unknown: fly/pricing.json has no machine prices for region {item.region}")
    price = region.get((size, memory))
    if price is None:
        listed = ", ".join(f"{mb} MB" for preset, mb in region if preset == size)
        return Line(item.key, label, None, f"unknown: fly/pricing.json has no price for {size} with {memory} MB"
                    + (f" (Fly's matrix lists {listed})" if listed else ""))
    return Line(item.key, label, price.usd, f"{size} {memory} MB in {item.region} ${price.usd}")


def _line(item: Billable, table: PriceTable) -> Line:
    if item.unknown:
        return Line(item.key, item.label, None, f"unknown: {item.unknown}")
    p = table.prices
    if item.kind == "machine":
        return _machine(item, table)
    if item.kind == "volume":
        unit = p.get("volume_gb_month")
        if unit is None:
            return Line(item.key, item.label, None, "unknown: fly/pricing.json has no volume price")
        return Line(item.key, f"{item.label}: {item.size_gb} GB", unit.usd * Decimal(item.size_gb or 0),
                    f"{item.size_gb} GB × ${unit.usd}/GB")
    if item.kind == "ip":
        key = {"v4": "dedicated_ipv4_month", "shared_v4": "shared_ipv4_month", "v6": "anycast_ipv6_month"}.get(
            item.ip_type or "")
        label = f"{item.label}: {item.ip_type}"
        if key is None or key not in p:
            return Line(item.key, label, None, f"unknown: fly/pricing.json has no price for {item.ip_type} addresses")
        return Line(item.key, label, p[key].usd, f"{item.ip_type} address ${p[key].usd}")
    if item.kind == "certificate":
        unit = p.get("certificate_hostname_month")
        if unit is None:
            return Line(item.key, item.label, None, "unknown: fly/pricing.json has no certificate price")
        return Line(item.key, item.label, unit.usd, f"hostname certificate ${unit.usd} (an org's first 10 are free)")
    return Line(item.key, item.label, None, f"unknown: no price for a {item.kind}")


def estimate(items: Iterable[Billable], table: PriceTable | None = None) -> Estimate:
    table = table or PriceTable.load()
    return Estimate(tuple(_line(item, table) for item in items))


@dataclass(frozen=True)
class Change:
    key: str
    label: str
    before: Decimal | None  # None: unknown, or not there (see ``present_before``)
    after: Decimal | None
    present_before: bool
    present_after: bool

    @property
    def delta(self) -> Decimal | None:
        if (self.present_before and self.before is None) or (self.present_after and self.after is None):
            return None
        return (self.after or Decimal("0")) - (self.before or Decimal("0"))


@dataclass(frozen=True)
class Comparison:
    before: Estimate
    after: Estimate
    changes: tuple[Change, ...] = field(default=())

    @property
    def delta(self) -> Decimal:
        """The change of the known totals (see ``complete``)."""
        return self.after.total - self.before.total

    @property
    def complete(self) -> bool:
        return self.before.complete and self.after.complete


def compare(before: Estimate, after: Estimate) -> Comparison:
    old = {line.key: line for line in before.lines}
    new = {line.key: line for line in after.lines}
    changes = tuple(
        Change(key, (new.get(key) or old[key]).label, old[key].usd if key in old else None,
               new[key].usd if key in new else None, key in old, key in new)
        for key in [*old, *[k for k in new if k not in old]])
    return Comparison(before, after, changes)


# ---- from Pulumi: a state's or a preview's resources ----

def _is_unknown(value: Any) -> bool:
    return value == UNKNOWN_VALUE or value is None


def billable_from_pulumi(type_: str, urn: str, inputs: Mapping[str, Any]) -> Billable | None:
    """The Billable a Fly resource of this project is, from its inputs; None for what Fly doesn't bill."""
    if not type_.startswith(FLY_TYPE):
        return None
    kind = type_.removeprefix(FLY_TYPE)
    if kind in NOT_BILLED:
        return None
    app = inputs.get("app")
    if kind == "Machine":
        config = inputs.get("config")
        label = f"machine {inputs.get('name')} ({app})"
        if not isinstance(config, Mapping) or not isinstance(config.get("guest", {}), Mapping):
            return Billable(urn, label, "machine", region=inputs.get("region"),
                            unknown="its size is known only after up (it depends on a resource still to be made)")
        return Billable(urn, label, "machine", region=inputs.get("region"), guest=config.get("guest") or {})
    if kind == "Volume":
        size = inputs.get("size_gb")
        label = f"volume {inputs.get('name')} ({app})"
        if _is_unknown(size):
            return Billable(urn, label, "volume", unknown="its size is known only after up")
        return Billable(urn, label, "volume", region=inputs.get("region"), size_gb=int(size))
    if kind == "IpAddress":
        return Billable(urn, f"address ({app})", "ip", ip_type=str(inputs.get("type")))
    if kind == "Certificate":
        return Billable(urn, f"certificate {inputs.get('hostname')} ({app})", "certificate")
    return Billable(urn, f"{kind} ({app})", kind.lower())
