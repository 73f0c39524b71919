"""One redactor for what a job says: every secret value replaced, the longest first (a value that contains
another is never half-replaced), values too short to be a secret left alone (they would mangle words)."""

from __future__ import annotations

from collections.abc import Iterable


class Redactor:
    def __init__(self, values: Iterable[str], *, mark: str = "[redacted]", min_length: int = 4) -> None:
        self.mark = mark
        self.min_length = min_length
        self.values = sorted({v for v in values if v and len(v) >= min_length}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, self.mark)
        return text

    def with_values(self, values: Iterable[str]) -> Redactor:
        """This redactor's values and ``values``."""
        return Redactor([*self.values, *values], mark=self.mark, min_length=self.min_length)
