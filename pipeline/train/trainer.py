"""The ``transformers.Trainer`` for a run: collator, metrics, class-weighted loss, callbacks, resume point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from pipeline.config import RunConfig
from pipeline.data.tokenize import make_collator
from pipeline.errors import TrainingError
from pipeline.rundir import RunDir
from pipeline.train.history import add_epoch_train_eval


def class_weighted_loss(weights: list[float]):
    """``Trainer(compute_loss_func=...)`` with a class-weighted cross entropy (balance=class_weights)."""
    weight = torch.tensor(weights, dtype=torch.float32)

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: int | None = None) -> torch.Tensor:
        logits = outputs["logits"]
        return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight.to(logits.device))

    return loss


def build_trainer(
    cfg: RunConfig,
    model: PreTrainedModel,
    tokenizer: Any,
    tokenized: Any,
    args: TrainingArguments,
    *,
    compute_metrics: Callable[[Any], dict[str, float]],
    class_weights: list[float] | None = None,
) -> Trainer:
    """The Trainer; ``compute_metrics`` scores each validation pass (it picks the best checkpoint)."""
    callbacks = []
    if cfg.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.training.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=make_collator(tokenizer),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        compute_loss_func=class_weighted_loss(class_weights) if class_weights else None,
        callbacks=callbacks,
    )
    # Train loss/accuracy per epoch on a train subset, for the book-style curves in the report.
    add_epoch_train_eval(trainer, tokenized["train"], cfg.evaluation.epoch_train_rows, cfg.training.seed)
    return trainer


def resume_checkpoint(setting: bool | str | None, run: RunDir) -> str | None:
    if not setting:
        return None
    if isinstance(setting, str):
        if not Path(setting).is_dir():
            raise TrainingError(f"training.resume_from_checkpoint={setting} is not a checkpoint dir")
        return setting
    last = get_last_checkpoint(str(run.checkpoints)) if run.checkpoints.is_dir() else None
    if last is None:
        raise TrainingError(
            f"training.resume_from_checkpoint=true but {run.checkpoints} holds no checkpoint; "
            "drop the option to start fresh"
        )
    return last
