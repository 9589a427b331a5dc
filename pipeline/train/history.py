"""Per-epoch training history: a callback that scores a train subset each epoch, and the epoch table.

The Trainer logs the running training loss every ``logging_steps`` and validation metrics at every
evaluation, but no train accuracy. The book's figures plot train and validation loss *and* accuracy
per epoch, both measured in eval mode; :class:`EpochTrainEval` adds that by scoring a fixed random
subset of the train split at every epoch end (``evaluation.epoch_train_rows`` rows, so it stays cheap)
and logging ``train_eval_*`` into ``trainer.state.log_history``, which also lands in every
checkpoint's ``trainer_state.json`` (so curves survive a resume).
"""

from __future__ import annotations

import time
from typing import Any

import datasets
import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from pipeline.train.batching import longest_first

PREFIX = "train_eval"
_LOGGED = ("loss", "accuracy", "f1")


class EpochTrainEval(TrainerCallback):
    """At every epoch end, score ``dataset`` (a train subset) and log ``train_eval_{loss,accuracy,f1}``."""

    def __init__(self, trainer: Trainer, dataset: datasets.Dataset) -> None:
        self.trainer = trainer
        self.dataset = dataset

    def on_epoch_end(self, args, state, control, **kwargs):
        # trainer.predict (not evaluate): it does not fire on_evaluate, so early stopping and best-model
        # tracking only ever see the validation metrics. It runs on every rank and gathers under DDP.
        output = self.trainer.predict(self.dataset, metric_key_prefix=PREFIX)
        wanted = {f"{PREFIX}_{key}" for key in _LOGGED}
        self.trainer.log({k: float(v) for k, v in output.metrics.items() if k in wanted})
        return control


class EpochTimer(TrainerCallback):
    """Wall seconds of each epoch's training steps, its evaluations excluded, in ``seconds``.

    The first epoch also pays for warm-up (CUDA context, kernel selection, allocator growth), which on a GPU can
    be most of a short run; hand-written loops usually report their speed after it, so a benchmark needs the
    epochs apart to compare like with like. Registered before the callbacks that evaluate at epoch end.
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started: float | None = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._started = _synchronized_clock()
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._started is not None:
            self.seconds.append(round(_synchronized_clock() - self._started, 3))
            self._started = None
        return control


def _synchronized_clock() -> float:
    """``perf_counter`` after queued GPU work has finished (CUDA runs asynchronously to Python)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def epoch_seconds(trainer: Trainer) -> list[float]:
    """What the trainer's :class:`EpochTimer` measured in this process (a resumed run: the epochs after resume)."""
    timers = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EpochTimer)]
    return timers[0].seconds if timers else []


def add_epoch_train_eval(trainer: Trainer, train: datasets.Dataset, rows: int, seed: int) -> None:
    """Register :class:`EpochTrainEval` on ``trainer`` with a seeded subset of ``rows`` train rows (0: off)."""
    if rows <= 0 or len(train) == 0:
        return
    picked = np.random.default_rng(seed).permutation(len(train))[:rows]
    subset = train.select(sorted(int(i) for i in picked))
    trainer.add_callback(EpochTrainEval(trainer, longest_first(subset)))  # order-free metrics: pad less


def epoch_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluation point (usually per epoch) from ``trainer.state.log_history``.

    Keys: ``epoch``, ``step``, ``train_loss``/``train_accuracy`` (train subset, eval mode, from
    :class:`EpochTrainEval`), ``validation_loss``/``validation_accuracy``/``validation_f1`` and
    ``logged_loss`` (mean of the running training losses logged since the previous row). Missing
    values are absent rather than None.
    """
    rows: dict[float, dict[str, Any]] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        key = round(float(entry["epoch"]), 4)
        if "eval_loss" in entry:
            row = rows.setdefault(key, {"epoch": key})
            row["step"] = entry.get("step")
            for name in ("loss", "accuracy", "f1"):
                if f"eval_{name}" in entry:
                    row[f"validation_{name}"] = float(entry[f"eval_{name}"])
        if f"{PREFIX}_loss" in entry:
            row = rows.setdefault(key, {"epoch": key})
            row.setdefault("step", entry.get("step"))
            for name in ("loss", "accuracy"):
                if f"{PREFIX}_{name}" in entry:
                    row[f"train_{name}"] = float(entry[f"{PREFIX}_{name}"])
    ordered = [rows[k] for k in sorted(rows)]
    losses = step_losses(log_history)
    previous = 0.0
    for row in ordered:
        inside = [loss for epoch, loss in losses if previous < epoch <= row["epoch"] + 1e-9]
        if inside:
            row["logged_loss"] = float(np.mean(inside))
        previous = row["epoch"]
    return ordered


def step_losses(log_history: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(epoch, running training loss) for every logging step."""
    return [(float(e["epoch"]), float(e["loss"])) for e in log_history if "loss" in e and "epoch" in e]
