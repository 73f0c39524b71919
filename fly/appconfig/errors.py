"""The fly.toml error: what is wrong, where (file, line, key path) and how to fix it."""

from __future__ import annotations

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

