"""A started service freezes its start-up heap and collects the young generation less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from switchboard_common.gc_tuning import tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_freezes_what_lives_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    _, middle, old = gc.get_threshold()
    survivor = [object() for _ in range(1000)]
    tune_gc(50_000)
    assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_threshold() == (50_000, middle, old)
    # Objects made after start-up are still the collector's: a cycle made now is found and freed.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
