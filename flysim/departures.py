"""flysim's documented departures from Fly: `departures.json`, one list for people and tests.

Each entry says what flysim does, what Fly does and where that is written, and
whether the difference is deliberate. Entries with a `conformance` rule are the
ones a spec-based test may meet: `{"kind": "status"|"body", "operations": [...]|"*",
"statuses": [...]}` covers an answer whose status the spec does not document for
the operation (`status`), or whose body does not validate against the spec
(`body`); an optional `"modes": [...]` limits a rule to requests the test made
invalid on purpose (`negative`, `confused`). docs/flysim.md's "Known differences from Fly" table is rendered from
this file (`python -m flysim.departures`), and a test keeps the two equal.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("departures.json")
DOC = Path(__file__).resolve().parent.parent / "docs" / "flysim.md"
START, END = "<!-- departures:start -->", "<!-- departures:end -->"


@dataclass(frozen=True)
class Departure:
    id: str
    flysim: str
    fly: str
    source: str
    deliberate: bool
    conformance: dict[str, Any] | None = None

    def covers(self, kind: str, operation: str, status: int, mode: str | None = None) -> bool:
        rule = self.conformance
        if not rule or rule["kind"] != kind:
            return False
        if "modes" in rule and mode not in rule["modes"]:
            return False
        ops = rule["operations"]
        return (ops == "*" or operation in ops) and status in rule["statuses"]


@dataclass(frozen=True)
class Departures:
    entries: tuple[Departure, ...] = field(default_factory=tuple)

    def covers(self, kind: str, operation: str, status: int, mode: str | None = None) -> bool:
        return any(d.covers(kind, operation, status, mode) for d in self.entries)

    def markdown(self) -> str:
        rows = ["| id | flysim | Fly | source | deliberate |", "| --- | --- | --- | --- | --- |"]
        for d in self.entries:
            cells = [f"`{d.id}`", d.flysim, d.fly, d.source, "yes" if d.deliberate else "no"]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(rows)


def load_departures(path: Path = PATH) -> Departures:
    doc = json.loads(path.read_text())
    return Departures(tuple(Departure(**entry) for entry in doc["departures"]))


def doc_table(doc: Path = DOC) -> str:
    text = doc.read_text()
    return text[text.index(START) + len(START):text.index(END)].strip()


if __name__ == "__main__":  # pragma: no cover - prints the table for docs/flysim.md
    sys.stdout.write(load_departures().markdown() + "\n")
