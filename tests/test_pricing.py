"""fly.pricing: the monthly estimate moves by exactly the price table's amounts, and a price the table lacks is
reported as unknown, never counted as zero. (The default slice's estimate against a hand computation, from a real
preview, is in tests/e2e/test_policy.py.)

Items are built the way the callers build them: ``billable_from_pulumi`` on the inputs the slice's resources
have in a state or preview (shapes from fly/providers and fly/appconfig.machine_config)."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest

from fly.pricing import PRICES_FILE, PriceTable, PriceTableError, billable_from_pulumi, compare, estimate, in_words
from ops.cost import render_text

FLY = "pulumi-python:dynamic/fly:"
SHIPPED = json.loads(PRICES_FILE.read_text())


def machine(name: str, *, app: str = "org1-nfs", region: str = "syd", cpu_kind: str = "shared", cpus: int = 1,
            memory_mb: int = 512):
    return billable_from_pulumi(f"{FLY}Machine", f"urn::{name}", {
        "app": app, "name": name, "region": region,
        "config": {"image": "x", "guest": {"cpu_kind": cpu_kind, "cpus": cpus, "memory_mb": memory_mb}}})


def volume(size_gb: int, name: str = "nfsdata"):
    return billable_from_pulumi(f"{FLY}Volume", f"urn::{name}", {"app": "org1-nfs", "name": name,
                                                                  "region": "syd", "size_gb": size_gb})


def without_region(region: str) -> PriceTable:
    """The shipped table without one region's machine matrix: what the table is for a region Fly adds later."""
    data = copy.deepcopy(SHIPPED)
    del data["machines"]["prices"][region]
    return PriceTable.parse(data)


def test_every_shipped_price_names_its_public_source_and_the_day_it_was_read() -> None:
    table = PriceTable.load()
    assert table.prices, "the table is empty"
    for key, price in table.prices.items():
        assert price.source_url.startswith("https://fly.io/"), key
        assert len(price.read) == 10 and price.read[4] == "-", key
        assert price.quote, key
    machines = [price for cells in table.machines.values() for price in cells.values()]
    assert len(table.machines) == 35 and len(machines) == 35 * 31  # every region Fly lists, 31 sizes each
    assert all(p.source_url == "https://fly.io/docs/about/pricing/" and p.read == "2025-08-19" for p in machines)
    broken = copy.deepcopy(SHIPPED)
    del broken["prices"]["volume_gb_month"]["read"]
    with pytest.raises(PriceTableError, match="volume_gb_month"):
        PriceTable.parse(broken)


def test_growing_a_volume_moves_the_estimate_by_exactly_the_volume_price() -> None:
    table = PriceTable.load()
    before, after = estimate([volume(10)], table), estimate([volume(25)], table)
    per_gb = Decimal(SHIPPED["prices"]["volume_gb_month"]["usd"])
    assert compare(before, after).delta == 15 * per_gb == Decimal("2.25")
    assert after.complete


def test_a_price_missing_from_the_table_is_reported_not_zero() -> None:
    table = PriceTable.load()
    # 768 MB on a shared-cpu-1x is a size Fly runs but its matrix doesn't list (it says "about $5" a GB extra).
    odd = machine("org1-nfs-0", memory_mb=768)
    result = estimate([volume(10), odd], table)
    assert not result.complete
    assert [line.basis for line in result.unknown] == [
        "unknown: fly/pricing.json has no price for shared-cpu-1x with 768 MB (Fly's matrix lists 256 MB, 512 MB, "
        "1024 MB, 2048 MB)"]
    assert result.total == Decimal("1.50")  # the known part, and said to be a lower bound:
    text = render_text(compare(estimate([], table), result))
    assert "at least $1.50 (1 unknown)" in text and "no price for shared-cpu-1x with 768 MB" in text
    assert in_words([volume(10), odd], table) == (
        "About $1.50 a month on your Fly bill (volume nfsdata (org1-nfs)), plus the machine, whose price isn't in our "
        "price table. Machines are counted as running all month.")
    assert in_words([volume(10), machine("a", memory_mb=768), machine("b", memory_mb=768)], table).endswith(
        "plus the two machines, whose prices aren't in our price table. Machines are counted as running all month.")
    assert in_words([volume(10)], table) == "About $1.50 a month on your Fly bill (volume nfsdata (org1-nfs))."
    # A region whose matrix the table lacks (one Fly adds later) is unknown too, though the size is listed.
    assert estimate([machine("m", region="fra")], without_region("fra")).unknown[0].basis == \
        "unknown: fly/pricing.json has no machine prices for region fra"


@pytest.mark.parametrize(("change", "after", "expected_delta"), [
    # From fly/pricing.json's machines (Fly's matrices, read 2025-08-19). Before: shared-cpu-1x 512 MB in syd $4.05.
    ("size", {"cpus": 2}, Decimal("4.93") - Decimal("4.05")),           # shared-cpu-2x 512 MB in syd: $4.93
    ("memory", {"memory_mb": 1024}, Decimal("7.23") - Decimal("4.05")),  # shared-cpu-1x 1024 MB in syd: $7.23
    ("region", {"region": "ams"}, Decimal("3.32") - Decimal("4.05")),    # shared-cpu-1x 512 MB in ams: $3.32
    ("kind", {"cpu_kind": "performance", "memory_mb": 2048}, Decimal("39.35") - Decimal("4.05")),  # perf-1x 2 GB syd
])
def test_a_machine_change_moves_the_estimate_by_exactly_the_table_amounts(change, after, expected_delta) -> None:
    table = PriceTable.load()
    before = estimate([machine("m")], table)
    assert before.total == Decimal("4.05") and before.complete
    moved = estimate([machine("m", **after)], table)
    assert moved.complete and compare(before, moved).delta == expected_delta, change


def test_adding_a_customer_app_adds_exactly_its_machine_and_addresses() -> None:
    table = PriceTable.load()
    slice_items = [volume(10), machine("org1-nfs-0")]
    customer = [machine("acme-web-0", app="acme-web", region="ams", cpus=1, memory_mb=256),
                billable_from_pulumi(f"{FLY}IpAddress", "urn::acme-v4", {"app": "acme-web", "type": "v4"}),
                billable_from_pulumi(f"{FLY}App", "urn::acme-app", {"name": "acme-web", "org_slug": "org1"})]
    grown = compare(estimate(slice_items, table), estimate([*slice_items, *[c for c in customer if c]], table))
    # shared-cpu-1x 256 MB in ams $2.02 + a dedicated IPv4 $2.00; the app itself isn't billed
    assert grown.delta == Decimal("2.02") + Decimal("2.00")
    assert [ch.label for ch in grown.changes if not ch.present_before] == [
        "machine acme-web-0 (acme-web): shared-cpu-1x, 256 MB, ams", "address (acme-web): v4"]
