"""Where to cut a length-sorted list of texts into forward passes, and what one more pass costs on this machine.

On CPU every padded token costs compute, and each forward pass has a fixed cost too (Python, kernel launches,
weights through the cache). Cutting a sorted batch where the padding saved outweighs one more pass gives the
fewest FLOPs for the same answers: a random batch of 32 SMS padded to its longest text is ~3x its real tokens,
cut by length ~1.15x. On a GPU, consecutive full batches are best (padding is nearly free there).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from pipeline.errors import ServeError


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"``: CUDA when there is one, else CPU; anything else must name a usable device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ServeError(f"unknown device {device!r}; pass auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ServeError(f"device {device!r} asked for, but torch sees no CUDA GPU; pass --device cpu")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ServeError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPU(s)); pass cuda:0")
    return resolved


def plan_batches(lengths: list[int], max_batch: int, pass_cost: float) -> list[tuple[int, int]]:
    """Cut ascending ``lengths`` into consecutive ``[start, end)`` batches of at most ``max_batch`` rows that
    minimise padded tokens plus ``pass_cost`` per batch (dynamic programming: optimal, O(n * max_batch))."""
    best = [0.0] + [float("inf")] * len(lengths)
    start_of = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        for start in range(max(0, end - max_batch), end):
            cost = best[start] + pass_cost + (end - start) * lengths[end - 1]  # padded to the longest, the last
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    cuts, end = [], len(lengths)
    while end > 0:
        cuts.append((start_of[end], end))
        end = start_of[end]
    return cuts[::-1]


def measure_pass_cost(forward: Callable[[int, int], object], small: int = 8, large: int = 128) -> float:
    """How many padded tokens one more forward pass costs: ``(fixed cost of a pass) / (cost of one token)``.

    Timed on ``forward(rows, tokens_per_row)`` at 1 x ``small`` and 4 x ``large // 4`` tokens (median of 3,
    after a warm-up). On CPU a GPT-2 small pass costs a few tokens (compute dominates: cut batches finely),
    a 2-block toy model hundreds (overheads dominate: keep batches whole). Clipped to [1, 4096].
    """

    def timed(rows: int, cols: int) -> float:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            forward(rows, cols)
            runs.append(time.perf_counter() - started)
        return sorted(runs)[1]

    forward(1, small)
    t_small, t_large = timed(1, small), timed(4, large // 4)
    per_token = (t_large - t_small) / (large - small)
    if per_token <= 0:  # timing noise: treat passes as expensive, i.e. keep batches whole
        return 4096.0
    return float(min(4096.0, max(1.0, (t_small - small * per_token) / per_token)))
