"""Wall-clock seconds per stage of a run, for ``environment.json`` (where the time goes, not just how much)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Iterator
from typing import Any


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
    age = _linux_process_age()
    if age is not None:
        return age
    try:
        import psutil  # installed with accelerate

        return max(time.time() - psutil.Process(os.getpid()).create_time(), 0.0)
    except Exception:  # pragma: no cover - exotic platforms: the number is informative only
        return None


def _linux_process_age() -> float | None:
    """The process's age from /proc, to 1/100 s: uptime minus the start time in clock ticks since boot.

    psutil's ``create_time`` adds that start time to the boot time, which Linux gives in whole seconds, so
    its age is off by a fixed 0-1 s per boot (0.9 s on the machine where this was found: 'start_up' read
    5.7 s when imports took 4.8 s and Python 0.03 s).
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (name)": the name may hold spaces
        with open("/proc/uptime", encoding="ascii") as uptime:
            now = float(uptime.read().split()[0])
        return max(now - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 0.0)  # field 22 of proc(5): starttime
    except (OSError, ValueError, IndexError):
        return None


def imports_recompile(module: Any) -> bool:
    """True when ``module`` (already imported) has no bytecode file: this process compiled it from source and,
    since Python would have written the ``.pyc`` next to it if it could, so does every process after it.

    That is the case under PYTHONDONTWRITEBYTECODE=1 (or ``python -B``) in an environment installed without
    bytecode (``pip install --no-compile``, many container images), or with a read-only site-packages. Compiling
    what a run imports costs ~9 s per process on 2 CPU cores (bench/start_up_bytecode.sh: ``start_up`` 5.7 s with
    bytecode, 14.7 s without), every start. Modules that do not come from a source file count as compiled.
    """
    source = getattr(module, "__file__", None)
    if not source or not source.endswith(".py") or not os.path.isfile(source):  # built in, or inside a zip
        return False
    return not os.path.exists(importlib.util.cache_from_source(source))
