"""The departures list is one list: docs/flysim.md's table is rendered from flysim/departures.json."""

from __future__ import annotations

import json

from flysim.departures import PATH, doc_table, load_departures


def test_the_docs_table_is_rendered_from_the_json() -> None:
    assert doc_table() == load_departures().markdown(), "run `python -m flysim.departures` and paste its table into docs/flysim.md"


def test_every_departure_names_a_source_and_says_whether_it_is_deliberate() -> None:
    entries = json.loads(PATH.read_text())["departures"]
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    for e in entries:
        assert e["source"].strip() and e["fly"].strip() and e["flysim"].strip(), e["id"]
        assert isinstance(e["deliberate"], bool), e["id"]
        rule = e.get("conformance")
        if rule:
            assert rule["kind"] in ("status", "body") and rule["statuses"], e["id"]
            assert all(400 <= s < 500 for s in rule["statuses"]) or rule["kind"] == "body", e["id"]


def test_no_departure_excuses_a_server_error() -> None:
    departures = load_departures()
    assert not any(departures.covers(kind, "Machines_create", status)
                   for kind in ("status", "body") for status in (500, 502, 503))


def test_a_rule_with_modes_covers_only_requests_made_invalid_on_purpose() -> None:
    departures = load_departures()
    assert departures.covers("body", "Machines_create", 200, "negative")
    assert departures.covers("body", "Machines_create", 200, "confused")
    assert not departures.covers("body", "Machines_create", 200, "positive")
