"""One redactor for what a job says: every secret value replaced, the longest first (a value that contains
another is never half-replaced), values too short to be a secret left alone (they would mangle words); with
``piece``, every run of that many characters of a value too (evidence kept for people: a token wrapped, cut
or quoted in part must not survive either)."""

from __future__ import annotations

from collections.abc import Iterable


class Redactor:
    def __init__(self, values: Iterable[str], *, mark: str = "[redacted]", min_length: int = 4,
                 piece: int | None = None) -> None:
        self.mark = mark
        self.min_length = min_length
        self.piece = piece
        self.values = sorted({v for v in values if v and len(v) >= min_length}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, self.mark)
            if self.piece:
                for start in range(len(value) - self.piece + 1):
                    text = text.replace(value[start:start + self.piece], self.mark)
        return text

    def with_values(self, values: Iterable[str]) -> Redactor:
        """This redactor's values and ``values``."""
        return Redactor([*self.values, *values], mark=self.mark, min_length=self.min_length, piece=self.piece)
