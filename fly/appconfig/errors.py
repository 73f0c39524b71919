"""The fly.toml error: what is wrong, where (file, line, key path) and how to fix it."""

from __future__ import annotations

import re
from typing import Iterable

from ..errors import FlyError

DOCS = "https://fly.io/docs/reference/configuration/"


class FlyTomlError(FlyError, ValueError):
    """A fly.toml that cannot become a machine config. The message is one line (Pulumi shows a program
    error's first line in its summary): the file and line, the key path, what is wrong with the value
    and how to fix it; later issues follow on the same line."""

    def __init__(self, source: str, key: str | None, problem: str, fix: str, *, line: int | None = None,
                 more: Iterable[tuple[str | None, str, str, int | None]] = ()) -> None:
        self.source, self.key, self.problem, self.fix, self.line = source, key, problem, fix, line
        self.issues = [(key, problem, fix, line), *more]
        where = f"{source}:{line}" if line else source
        parts = [f"{where}: {self._one(key, problem, fix)}"]
        parts += [f"also {f'line {n}: ' if n else ''}{self._one(k, p, x)}" for k, p, x, n in self.issues[1:]]
        super().__init__("; ".join(parts))

    @staticmethod
    def _one(key: str | None, problem: str, fix: str) -> str:
        return f"{key + ': ' if key else ''}{problem.rstrip('.')}. Fix: {fix}"


class BadValue(ValueError):
    """Raised inside validators; carries the fix (and a key path below the failing location)."""

    def __init__(self, problem: str, fix: str, key: tuple[str | int, ...] = ()) -> None:
        self.problem, self.fix, self.key = problem, fix, key
        super().__init__(problem)


# Where a key is: tomllib keeps no positions, so messages find the line of a key path again.

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")
_PART = re.compile(r"[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'")


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


def key_lines(text: str) -> dict[str, int]:
    """The line of every table header and key of a TOML text, by key path ("mounts[1].source"), so
    an error found after parsing still points at its line. Best effort: tomllib keeps no positions."""
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:  # inside a multi-line string: nothing here is a key
            if line.count(in_string) % 2:
                in_string = None
            continue
        header = _HEADER.match(line)
        if header:
            names = _parts(header.group(2))
            path = ""
            for i, name in enumerate(names):  # each level resolves to its latest array element
                path = f"{path}.{name}" if path else name
                last = i == len(names) - 1
                if header.group(1) == "[[" and last:
                    counts[path] = counts.get(path, -1) + 1
                    lines.setdefault(path, number)
                if path in counts:
                    path = f"{path}[{counts[path]}]"
            table = path
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            path = ".".join([table, *_parts(key.group(1))] if table else _parts(key.group(1)))
            lines.setdefault(path, number)
            rest = line[key.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2:
                    in_string = quote
    return lines


def line_of(lines: dict[str, int], key: str | None) -> int | None:
    """The line of ``key``, or of the nearest enclosing table or key that has one."""
    while key:
        if key in lines:
            return lines[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else None
    return None
