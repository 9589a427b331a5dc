"""The server moves what it loaded out of the garbage collector's reach (latency: see freeze_loaded_objects)."""

from __future__ import annotations

import gc

from pipeline.serve.server import freeze_loaded_objects


def test_freeze_moves_loaded_objects_to_the_permanent_generation():
    loaded = [object() for _ in range(1000)]  # stands in for the model and the libraries loaded before serving
    before = gc.get_freeze_count()
    try:
        freeze_loaded_objects()
        assert gc.get_freeze_count() >= before + len(loaded)
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
