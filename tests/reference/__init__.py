"""Fly's reference data (the Machines OpenAPI spec, flyctl's GraphQL schema) for conformance tests.

The team's shared copy beside the checkout (``../shared/fly``) wins, so tests follow its updates; a
copy of the same files is kept here (see fly/SOURCE.md) so a clone anywhere can run the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def fly_reference(name: str) -> Path:
    candidates = [Path(os.environ["FLY_REFERENCE_DIR"]) / name] if os.environ.get("FLY_REFERENCE_DIR") else []
    candidates += [_REPO.parent / "shared" / "fly" / name, Path(__file__).resolve().parent / "fly" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Fly reference file {name} not found in {', '.join(map(str, candidates))}")
