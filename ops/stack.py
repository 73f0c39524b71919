"""Read a slice's stack outputs through the Automation API (the project directory is the repo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pulumi import automation as auto

REPO = Path(__file__).resolve().parent.parent


def stack_outputs(stack: str, work_dir: Path | None = None) -> dict[str, Any]:
    """Outputs with secret values unwrapped: callers must never print secret ones."""
    selected = auto.select_stack(stack_name=stack, work_dir=str(work_dir or REPO))
    return {key: value.value for key, value in selected.outputs().items()}


def secret_output_names(stack: str, work_dir: Path | None = None) -> set[str]:
    selected = auto.select_stack(stack_name=stack, work_dir=str(work_dir or REPO))
    return {key for key, value in selected.outputs().items() if value.secret}
