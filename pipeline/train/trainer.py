"""The ``transformers.Trainer`` for a run: collator, metrics, class-weighted loss, callbacks, resume point."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import DefaultFlowCallback, EarlyStoppingCallback, PreTrainedModel, Trainer, TrainingArguments

from pipeline.config import RunConfig, TrainingConfig
from pipeline.data.tokenize import LENGTH, make_collator, padding_multiple
from pipeline.errors import TrainingError
from pipeline.rundir import RunDir
from pipeline.train.batching import LengthGroupedTrainer, TokenBudgetBatchSampler, longest_first, sampling_seed
from pipeline.train.checkpointing import CheckpointGate, KeepBestWeights
from pipeline.train.history import EpochTimer, add_epoch_train_eval

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
"""The Trainer writes it last into a checkpoint, so a checkpoint whose state file parses is complete."""
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", "pytorch_model.bin")


def classification_loss(
    class_weights: list[float] | None = None, rows_per_update: float | None = None, *, multi_label: bool = False
):
    """``Trainer(compute_loss_func=...)``: cross entropy, class-weighted (balance=class_weights) or not.

    The batch's (weighted) mean cross entropy, as in evaluation, where no count is passed. In training the
    Trainer hands over ``num_items_in_batch``, the rows of the whole optimizer step on this process (all
    accumulated batches), and does not divide a custom loss by the accumulation steps itself: the mean is
    scaled by this batch's share of those rows (1 without accumulation). With token-budget batches (rows per
    batch vary with length) the per-row losses are summed and divided by ``rows_per_update``, the MEAN rows
    of a step: every row then weighs the same whichever batch it lands in (a per-batch mean would weigh a
    long row in a batch of 32 four times a short row in a batch of 128, and spam is longer than ham).

    ``multi_label``: binary cross entropy with logits per label (``class_weights`` are then its per-label
    ``pos_weight``), averaged over the labels of a row, so one row still weighs one.
    """
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
    if multi_label:
        return _multi_label_loss(weight, rows_per_update)

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"].float()
        w = weight.to(logits.device) if weight is not None else None
        if num_items_in_batch is not None and rows_per_update:
            per_row = torch.nn.functional.cross_entropy(logits, labels, weight=w, reduction="none")
            return per_row.sum() / rows_per_update
        mean = torch.nn.functional.cross_entropy(logits, labels, weight=w)
        return mean if num_items_in_batch is None else mean * (labels.numel() / num_items_in_batch)

    return loss


def _multi_label_loss(pos_weight: torch.Tensor | None, rows_per_update: float | None):
    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"].float()
        w = pos_weight.to(logits.device) if pos_weight is not None else None
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels.float(), pos_weight=w, reduction="none"
        ).mean(dim=-1)
        if num_items_in_batch is not None and rows_per_update:
            return per_row.sum() / rows_per_update
        mean = per_row.mean()
        return mean if num_items_in_batch is None else mean * (labels.shape[0] / num_items_in_batch)

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
    pad_multiple = padding_multiple(on_cpu=args.use_cpu)
    batches = token_budget_batches(cfg.training, tokenized["train"], args, pad_multiple)
    # Token-budget batches: the loss is divided by the mean rows of one optimizer step on one process.
    rows_per_update = batches.mean_rows * args.gradient_accumulation_steps if batches is not None else None
    needs_own_loss = class_weights or rows_per_update
    trainer = LengthGroupedTrainer(
        model=model,
        args=args,
        data_collator=make_collator(tokenizer, pad_to_multiple_of=pad_multiple),
        train_dataset=tokenized["train"],
        eval_dataset=longest_first(tokenized["validation"]),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        compute_loss_func=classification_loss(class_weights, rows_per_update, multi_label=cfg.data.is_multi_label)
        if needs_own_loss
        else None,
        callbacks=callbacks,
        train_batches=batches,
    )
    add_checkpoint_policy(trainer, cfg.training)
    trainer.add_callback(EpochTimer())  # before the epoch-end train evaluation below, so it is not timed
    # Train loss/accuracy per epoch on a train subset, for the book-style curves in the report.
    add_epoch_train_eval(trainer, tokenized["train"], cfg.evaluation.epoch_train_rows, cfg.training.seed)
    return trainer


def token_budget_batches(
    training: TrainingConfig, train: Any, args: TrainingArguments, pad_multiple: int | None
) -> TokenBudgetBatchSampler | None:
    """The training batches under ``training.train_batch_tokens`` (None without a budget): at most the Trainer's
    per-process batch size in rows, padded as the collator pads, in an order drawn from the data seed."""
    if not training.train_batch_tokens:
        return None
    return TokenBudgetBatchSampler(
        train[LENGTH], args.train_batch_size, training.train_batch_tokens, sampling_seed(args), pad_multiple or 1
    )


def add_checkpoint_policy(trainer: Trainer, training: TrainingConfig) -> None:
    """Skip checkpoints in short runs (CheckpointGate) and keep the best weights in memory instead.

    FSDP shards the weights across processes: there the Trainer's own checkpoints pick the best model.
    """
    gated = trainer.args.save_strategy != "best" and (training.checkpoint_minutes > 0 or training.save_strategy == "no")
    if not gated or trainer.is_fsdp_enabled:
        return
    # save_strategy=no with load_best_model_at_end: evaluations are save points for transformers, none is written.
    minutes = float("inf") if training.save_strategy == "no" else training.checkpoint_minutes
    # Right after transformers' DefaultFlowCallback, which schedules saves: callbacks added later (e.g. the one that
    # saves on SIGTERM) can still ask for a checkpoint after the gate has spoken.
    callbacks = trainer.callback_handler.callbacks
    after = next((i + 1 for i, cb in enumerate(callbacks) if isinstance(cb, DefaultFlowCallback)), len(callbacks))
    callbacks.insert(after, CheckpointGate(minutes))
    if trainer.args.load_best_model_at_end:
        trainer.add_callback(KeepBestWeights())


def checkpoint_step(checkpoint: Path) -> int | None:
    """The step a checkpoint holds, or None when it is incomplete (killed while being written, or half rotated away).

    The Trainer writes weights, optimizer, scheduler and RNG states first and ``trainer_state.json`` last; a kill
    between those leaves a folder that would fail (or silently mislead) a resume.
    """
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not any((checkpoint / name).is_file() for name in _WEIGHTS):
        return None
    step = state.get("global_step")
    return step if isinstance(step, int) else None


def last_complete_checkpoint(run: RunDir) -> Path | None:
    """The newest checkpoint of ``run`` that is complete; incomplete newer ones are named in a warning."""
    for checkpoint in reversed(run.checkpoint_dirs()):
        if checkpoint_step(checkpoint) is not None:
            return checkpoint
        log.warning("skipping the incomplete checkpoint %s (interrupted while it was written)", checkpoint)
    return None


def resume_checkpoint(setting: bool | str | None, run: RunDir) -> str | None:
    """The checkpoint ``training.resume_from_checkpoint`` points at (``true``: the run's last complete one)."""
    if not setting:
        return None
    if isinstance(setting, str):
        if not Path(setting).is_dir():
            raise TrainingError(f"training.resume_from_checkpoint={setting} is not a checkpoint dir")
        if checkpoint_step(Path(setting)) is None:
            raise TrainingError(
                f"training.resume_from_checkpoint={setting} is incomplete (no readable {TRAINER_STATE} or weights); "
                "pass an earlier checkpoint, or true for the last complete one"
            )
        checkpoint = Path(setting)
    else:
        found = last_complete_checkpoint(run)
        if found is None:
            raise TrainingError(
                f"training.resume_from_checkpoint=true but {run.checkpoints} holds no complete checkpoint (a run "
                "shorter than training.checkpoint_minutes writes none unless stopped by Ctrl-C/SIGTERM); drop the "
                "option to start fresh (add output.overwrite=true if the run dir is not empty), and pass "
                "training.checkpoint_minutes=0 to write one at every epoch"
            )
        checkpoint = found
    log.info("resuming from %s (step %d)", checkpoint, checkpoint_step(checkpoint))
    return str(checkpoint)
