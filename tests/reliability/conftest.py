"""Helpers for the reliability tests: real training commands in their own process group, read line by line.

A test starts ``python train.py ...`` (or ``accelerate launch ... train.py ...``) with ``start_new_session=True``,
so that ``os.killpg`` reaches every process of the run (launcher, trainer, workers) the way a terminal's Ctrl-C
or a scheduler's kill does, and never the test runner itself.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "configs/smoke.yaml"
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--config_file", "accelerate_config.yaml"]
EPOCH = re.compile(r"'epoch': '([0-9.]+)'")
"""The Trainer's log lines (printed with disable_tqdm) end with the epoch, e.g. ``'epoch': '1.167'``."""

RUN_SETTINGS = {
    # 3 epochs of 6 steps (84 train rows, batch 16); a log line per step tells where training is.
    "training.num_train_epochs": 3,
    "training.logging_steps": 1,
    # The best checkpoint by validation loss is the last one here, so the final weights are those of the
    # last step and depend on every step before (by F1 the first epoch already scores 1.0 and stays best).
    "training.metric_for_best_model": "loss",
    "evaluation.plots": False,
    # A checkpoint at every epoch (the default writes one only every 10 minutes): these runs resume from them.
    "training.checkpoint_minutes": 0,
}


def run_overrides(data: Path, out: Path, cache: Path, **extra: object) -> list[str]:
    return tiny_overrides(data, out, cache, **(RUN_SETTINGS | extra))


def offline_env() -> dict[str, str]:
    # One intra-op thread: the tiny models gain nothing from more, and on a shared 2-core machine OpenMP's
    # spinning threads doubled the CPU time of each run (17 s -> 9 s user per tiny run, measured). Every run
    # in a comparison uses the same setting (torch's elastic launcher sets it for DDP workers anyway).
    return os.environ | {
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The same for training inside the test process (restored afterwards, for the tests of other folders)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Running:
    """A command started in its own session; its merged stdout/stderr is collected by a reader thread."""

    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue = field(default_factory=queue.Queue)

    @classmethod
    def start(cls, cmd: list[str]) -> Running:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=offline_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        running = cls(proc)
        threading.Thread(target=running._read, daemon=True).start()
        return running

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)  # EOF: every process holding the pipe (launcher, orphaned trainer) has exited

    def _new_lines(self, deadline: float) -> Iterator[str | None]:
        """Output lines as they come (each also kept in ``lines``) until ``deadline``; ``None`` once the output has
        ended, which stays queued for the next reader."""
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return
            if line is None:
                self._queue.put(None)
                yield None
                return
            self.lines.append(line)
            yield line

    def wait_for(self, wanted: Callable[[str], bool], timeout: float = 300) -> str:
        """The first new output line for which ``wanted`` is true; fails if the output ends or time runs out."""
        for line in self._new_lines(time.monotonic() + timeout):
            if line is None:
                pytest.fail("the command ended before the awaited line:\n" + self.text[-4000:])
            if wanted(line):
                return line
        self.kill(signal.SIGKILL)
        pytest.fail(f"no awaited line within {timeout} s:\n" + self.text[-4000:])

    def kill(self, sig: int) -> None:
        """Send ``sig`` to the whole process group, as a terminal (Ctrl-C) or a scheduler does."""
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, sig)

    def finish(self, timeout: float = 300) -> int:
        """Wait for the end of the output (every process of the group) and return the started command's status."""
        deadline = time.monotonic() + timeout
        for line in self._new_lines(deadline):
            if line is None:
                return self.proc.wait(timeout=max(deadline - time.monotonic(), 1))
        self.kill(signal.SIGKILL)
        pytest.fail(f"the command did not end within {timeout} s:\n" + self.text[-4000:])

    @property
    def text(self) -> str:
        return "".join(self.lines)


def train_command(overrides: list[str], *, launcher: list[str] | None = None) -> list[str]:
    script = ["train.py", "--config", SMOKE, *overrides]
    if launcher is None:
        return [sys.executable, *script]
    return [*launcher, "--main_process_port", str(free_port()), *script]


def in_epoch(low: float, high: float) -> Callable[[str], bool]:
    """A Trainer log line whose epoch lies strictly between ``low`` and ``high`` (a step inside that epoch)."""

    def wanted(line: str) -> bool:
        match = EPOCH.search(line)
        return bool(match) and low < float(match.group(1)) < high

    return wanted


# ---------------------------------------------------------------------------------------------
# Counting hypothesis examples, printed in the terminal summary (issue 11: "the number of generated cases").

_CASES = pytest.StashKey[Counter]()


@pytest.fixture
def fuzz_cases(request: pytest.FixtureRequest) -> Counter:
    """A Counter shared by the session; fuzz tests add one per generated case under their own name."""
    return request.config.stash.setdefault(_CASES, Counter())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    cases = config.stash.get(_CASES, None)
    if not cases:
        return
    terminalreporter.section("fuzzing (hypothesis)")
    for name, count in sorted(cases.items()):
        terminalreporter.write_line(f"{name}: {count} generated cases")
    terminalreporter.write_line(f"total: {sum(cases.values())} generated cases")
