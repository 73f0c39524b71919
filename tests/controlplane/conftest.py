"""One slice on flysim per test module (made once, it is slow), with a clean call log for each test."""

from __future__ import annotations

from typing import Iterator

import pytest
from controlplane_helpers import SliceWorld, shared_world


@pytest.fixture(scope="module")
def _world() -> Iterator[SliceWorld]:
    with shared_world() as world:
        yield world


@pytest.fixture
def world(_world: SliceWorld) -> SliceWorld:
    _world.flysim.clear_calls()
    _world.flysim.reset_rate_limits()
    return _world
