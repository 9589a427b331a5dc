"""Wall-clock seconds per stage of a run, for ``environment.json`` (where the time goes, not just how much)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator


class Stages:
    """``with stages("tokenize"): ...`` adds that block's seconds under its name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def to_dict(self) -> dict[str, float]:
        return {name: round(value, 2) for name, value in self.seconds.items()}


def seconds_since_process_start() -> float | None:
    """Seconds since this process started (Python start-up and imports included); None if unknown."""
    try:
        import psutil  # installed with accelerate

        return max(time.time() - psutil.Process(os.getpid()).create_time(), 0.0)
    except Exception:  # pragma: no cover - exotic platforms: the number is informative only
        return None
