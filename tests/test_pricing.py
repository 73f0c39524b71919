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


def with_machine_prices() -> PriceTable:
    """The shipped table plus the machine figures Fly's page doesn't state as numbers (so the shipped table
    lacks them): this test's own values, in the table's format, to check the arithmetic once they are added."""
    data = copy.deepcopy(SHIPPED)
    cite = {"source": "fly-pricing", "read": "2026-12-04", "quote": "test figure"}
    data["machine_presets"] = {"shared-cpu-1x": {"memory_mb": 256, "usd": "2.00", **cite},
                               "shared-cpu-2x": {"memory_mb": 512, "usd": "4.00", **cite}}
    data["extra_memory_gb_month"] = {"usd": "5.00", **cite}
    data["region_multipliers"] = {"syd": {"factor": "1.25", **cite}, "ams": {"factor": "1.00", **cite}}
    return PriceTable.parse(data)


def test_every_shipped_price_names_its_public_source_and_the_day_it_was_read() -> None:
    table = PriceTable.load()
    assert table.prices, "the table is empty"
    for key, price in table.prices.items():
        assert price.source_url.startswith("https://fly.io/"), key
        assert len(price.read) == 10 and price.read[4] == "-", key
        assert price.quote, key
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


def test_a_machine_size_missing_from_the_table_is_reported_not_zero() -> None:
    table = PriceTable.load()  # Fly's preset matrix is not in the shipped table
    result = estimate([volume(10), machine("org1-nfs-0")], table)
    assert not result.complete
    assert [line.basis for line in result.unknown] == ["unknown: fly/pricing.json has no price for shared-cpu-1x"]
    assert result.total == Decimal("1.50")  # the known part, and said to be a lower bound:
    text = render_text(compare(estimate([], table), result))
    assert "at least $1.50 (1 unknown)" in text and "no price for shared-cpu-1x" in text
    assert in_words([volume(10), machine("org1-nfs-0")], table) == (
        "About $1.50 a month on your Fly bill (volume nfsdata (org1-nfs)), plus the machine, whose price isn't in our "
        "price table. Machines are counted as running all month.")
    assert in_words([volume(10), machine("a"), machine("b")], table).endswith(
        "plus the two machines, whose prices aren't in our price table. Machines are counted as running all month.")
    assert in_words([volume(10)], table) == "About $1.50 a month on your Fly bill (volume nfsdata (org1-nfs))."
    # A region without a multiplier is unknown too, even when the size has a price.
    assert estimate([machine("m", region="fra")], with_machine_prices()).unknown[0].basis == \
        "unknown: fly/pricing.json has no price multiplier for region fra"


@pytest.mark.parametrize(("change", "after", "expected_delta"), [
    # 1x with 512 MB in syd: (2.00 + 256/1024 x 5.00) x 1.25 = 4.0625
    ("size", {"cpus": 2, "memory_mb": 512}, (Decimal("4.00") * Decimal("1.25")) - Decimal("4.0625")),
    ("memory", {"memory_mb": 1024}, Decimal("512") / 1024 * Decimal("5.00") * Decimal("1.25")),
    ("region", {"region": "ams"}, (Decimal("2.00") + Decimal("1.25")) * (Decimal("1.00") - Decimal("1.25"))),
])
def test_a_machine_change_moves_the_estimate_by_exactly_the_table_amounts(change, after, expected_delta) -> None:
    table = with_machine_prices()
    before = estimate([machine("m")], table)
    assert before.total == Decimal("4.0625")
    moved = estimate([machine("m", **after)], table)
    assert compare(before, moved).delta == expected_delta, change


def test_adding_a_customer_app_adds_exactly_its_machine_and_addresses() -> None:
    table = with_machine_prices()
    slice_items = [volume(10), machine("org1-nfs-0")]
    customer = [machine("acme-web-0", app="acme-web", region="ams", cpus=1, memory_mb=256),
                billable_from_pulumi(f"{FLY}IpAddress", "urn::acme-v4", {"app": "acme-web", "type": "v4"}),
                billable_from_pulumi(f"{FLY}App", "urn::acme-app", {"name": "acme-web", "org_slug": "org1"})]
    grown = compare(estimate(slice_items, table), estimate([*slice_items, *[c for c in customer if c]], table))
    assert grown.delta == Decimal("2.00") * Decimal("1.00") + Decimal("2.00")  # preset in ams + dedicated IPv4
    assert [ch.label for ch in grown.changes if not ch.present_before] == [
        "machine acme-web-0 (acme-web): shared-cpu-1x, 256 MB, ams", "address (acme-web): v4"]
