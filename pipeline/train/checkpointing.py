"""Checkpoints only where they pay, and the best weights kept in memory instead of on disk.

A resumable checkpoint holds the weights plus AdamW's two moments: ~12 bytes per trainable weight (1.5 GB
for GPT-2 small), written and rotated at every evaluation. For a run of a few minutes that costs more
than it protects: on a GPU it was most of the run. So a checkpoint that ``save_strategy`` asks for is
written only once ``training.checkpoint_minutes`` of training have passed since the start or the last
one (0: every one, transformers' behaviour); a crash then loses at most that much work. Picking the
best epoch no longer needs a checkpoint per evaluation: :class:`KeepBestWeights` copies the trainable
weights to CPU memory whenever validation improves and puts them back when training ends.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

log = logging.getLogger(__name__)


class CheckpointGate(TrainerCallback):
    """Let a due checkpoint through only after ``minutes`` of training since the start or the last save.

    Runs after transformers' ``DefaultFlowCallback`` (which raises ``should_save``) and before the Trainer
    acts on it. Under DDP every rank must take the same decision (saving has barriers): rank 0 decides.
    ``save_strategy="best"`` decides after evaluation, out of a callback's reach: it is left as it is.
    """

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60
        self.last = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self._gate(args, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._gate(args, control)

    def on_save(self, args, state, control, **kwargs):
        self.last = time.monotonic()

    def _gate(self, args, control) -> None:
        if control.should_save:
            control.should_save = same_on_all_ranks(time.monotonic() - self.last >= self.seconds, args)


def same_on_all_ranks(decision: bool, args: Any) -> bool:
    """Rank 0's ``decision`` on every rank (a no-op in a single process)."""
    if args.world_size <= 1 or not torch.distributed.is_initialized():
        return decision
    from accelerate.utils import broadcast_object_list

    return bool(broadcast_object_list([decision], from_process=0)[0])


class KeepBestWeights(TrainerCallback):
    """Copy the trainable weights to CPU at every new best validation score; restore them when training ends.

    "Best" is the Trainer's own rule (``metric_for_best_model``, ``greater_is_better``, strictly better than
    ``state.best_metric``), checked in ``on_evaluate``, just before the Trainer updates ``best_metric``. Only
    parameters that train are copied (all of them in full fine-tuning, the adapters and head in LoRA).
    Every DDP rank keeps its own copy: its replica holds the same weights.
    """

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] | None = None
        self.step: int | None = None
        self.epoch: float | None = None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if model is None or not metrics or not args.metric_for_best_model:
            return
        name = args.metric_for_best_model
        value = metrics.get(name if name.startswith("eval_") else f"eval_{name}")
        if value is None or not is_better(value, state.best_metric, args.greater_is_better):
            return
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if self.weights is None:
            # Page-locked buffers, allocated once: GPU-to-host copies then run asynchronously at full speed
            # (~25 ms for GPT-2 small) instead of stalling every new best for a pageable copy.
            pinned = torch.cuda.is_available() and any(p.is_cuda for _, p in trainable)
            self.weights = {n: torch.empty(p.shape, dtype=p.dtype, pin_memory=pinned) for n, p in trainable}
        for name, param in trainable:
            self.weights[name].copy_(param.detach(), non_blocking=True)  # stream-ordered before the next step
        self.step, self.epoch = state.global_step, state.epoch

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.weights is None or model is None:
            if state.best_global_step and state.best_model_checkpoint is None:
                log.warning(
                    "the best weights (step %s) were neither saved nor kept after the resume; "
                    "the model is the last one",
                    state.best_global_step,
                )
            return
        if self.step != state.best_global_step:
            return  # the best came before a resume; the Trainer loaded it from its checkpoint
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the last asynchronous copy has landed
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in self.weights:
                    param.copy_(self.weights[name].to(param.device))
        log.info("restored the best weights: epoch %g, step %s (%s)", self.epoch, self.step, args.metric_for_best_model)
        self.weights = None  # free the copy


def is_better(value: float, best: float | None, greater_is_better: bool | None) -> bool:
    if best is None:
        return True
    return bool(np.greater(value, best) if greater_is_better else np.less(value, best))
