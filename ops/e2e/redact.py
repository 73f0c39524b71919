"""What must never reach the evidence: token values (and fragments of them) and secret values."""

from __future__ import annotations

from typing import Any

REDACTED = "[redacted]"
SECRET_KEYS = {"secrets"}  # tool arguments and answers whose values are secrets


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str | None) -> None:
        """A token or secret value: it and any 12-character piece of it are cut from every text."""
        if value and len(value) >= 8:
            self._values.add(value)

    def text(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
            for start in range(0, max(1, len(value) - 11)):
                piece = value[start:start + 12]
                if len(piece) == 12 and piece in text:
                    text = text.replace(piece, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: (REDACTED if k in SECRET_KEYS and v else self.value(v)) for k, v in value.items()}
        return value

    def arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {k: (REDACTED if k in SECRET_KEYS and v else self.value(v)) for k, v in arguments.items()}
