"""What must never reach the evidence: token values (and fragments of them) and secret values."""

from __future__ import annotations

from typing import Any

from enginejob.redact import Redactor as _Redactor

REDACTED = "[redacted]"
SECRET_KEYS = {"secrets"}  # tool arguments and answers whose values are secrets


class Redactor:
    """Values are learnt as the run goes (tokens it mints); texts, tool answers and tool arguments are cut."""

    def __init__(self) -> None:
        self._redact = _Redactor([], mark=REDACTED, min_length=8, piece=12)

    def add(self, value: str | None) -> None:
        """A token or secret value: it and any 12-character piece of it are cut from every text."""
        if value:
            self._redact = self._redact.with_values([value])

    def text(self, text: str) -> str:
        return self._redact(text)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return self.arguments(value)
        return value

    def arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {k: (REDACTED if k in SECRET_KEYS and v else self.value(v)) for k, v in arguments.items()}
