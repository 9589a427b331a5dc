"""TrainingArguments from the config, the Trainer, and ``run(cfg)``: the whole pipeline wired once.

Every step is a function of plain values; ``run`` only calls them in order. Anything that can fail
on user input (config, data, model name) fails before the run directory is created.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, PreTrainedModel, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from pipeline.config import RunConfig, TrainingConfig
from pipeline.data import DataSummary, load_splits, write_split_csvs
from pipeline.errors import ConfigError, SpamTuneError
from pipeline.evaluation import check_evaluation_config, evaluate_run, write_run_artifacts
from pipeline.history import add_epoch_train_eval
from pipeline.metrics import trainer_metrics
from pipeline.modeling import count_parameters, load_model
from pipeline.rundir import MODEL_METADATA, RunDir, check_run_dir, environment_info, write_json, write_text_atomic
from pipeline.thresholds import Threshold
from pipeline.tokenize import load_tokenizer, make_collator, tokenize_splits

log = logging.getLogger(__name__)

# Our own knobs that are not TrainingArguments fields.
_NOT_TRAINING_ARGS = {"early_stopping_patience", "resume_from_checkpoint", "extra_args", "bf16", "fp16"}


@dataclass
class RunResult:
    run_dir: RunDir
    metrics: dict[str, Any]


def validate_extra_args(training: TrainingConfig) -> None:
    valid = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(training.extra_args) - valid)
    if unknown:
        raise ConfigError(
            f"training.extra_args has {unknown}, which TrainingArguments does not know; "
            "see the transformers TrainingArguments docs for valid names"
        )


def resolve_precision(training: TrainingConfig) -> tuple[bool, bool]:
    """(bf16, fp16): ``auto`` picks bf16 on GPUs that have it, fp16 on older GPUs, neither on CPU."""
    cuda = torch.cuda.is_available() and not training.use_cpu
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    bf16 = bf16_ok if training.bf16 == "auto" else bool(training.bf16)
    fp16 = (cuda and not bf16_ok) if training.fp16 == "auto" else bool(training.fp16)
    if bf16 and fp16:
        raise ConfigError("training.bf16 and training.fp16 are both on; set one of them to false")
    return bf16, fp16


def build_training_arguments(cfg: RunConfig, run: RunDir) -> TrainingArguments:
    training = cfg.training
    validate_extra_args(training)
    bf16, fp16 = resolve_precision(training)
    own = {f.name: getattr(training, f.name) for f in dataclasses.fields(training) if f.name not in _NOT_TRAINING_ARGS}
    accelerator = torch.cuda.is_available() or torch.backends.mps.is_available()
    # Without an accelerator, say so: accelerate then sets up DDP over gloo when several processes run
    # (otherwise each process would train alone and they would overwrite each other's files).
    own["use_cpu"] = training.use_cpu or not accelerator
    own["dataloader_pin_memory"] = torch.cuda.is_available() and not own["use_cpu"]
    # Our key keeps the familiar name. transformers 5.23 renamed it activation_checkpointing (the old name
    # warns); earlier 5.x releases know only gradient_checkpointing. Non-reentrant checkpointing lets gradients
    # reach adapters behind frozen inputs and works under DDP with find_unused_parameters=False.
    checkpointing = own.pop("gradient_checkpointing")
    name = (
        "activation_checkpointing"
        if hasattr(TrainingArguments, "activation_checkpointing")
        else "gradient_checkpointing"
    )
    own[name] = checkpointing
    own[f"{name}_kwargs"] = {"use_reentrant": False} if checkpointing else None
    if training.eval_strategy == "no":
        own["load_best_model_at_end"] = False
    elif training.load_best_model_at_end and training.save_strategy != "best":
        # Picking the best model needs a checkpoint at every evaluation.
        own["save_strategy"] = training.eval_strategy
    try:
        return _training_arguments(run, bf16, fp16, own, training)
    except ValueError as err:  # TrainingArguments' own consistency checks
        raise ConfigError(f"invalid training settings: {' '.join(str(err).split())}") from None


def _training_arguments(
    run: RunDir, bf16: bool, fp16: bool, own: dict[str, Any], training: TrainingConfig
) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(run.checkpoints),
        bf16=bf16,
        fp16=fp16,
        # Frozen parameters (last_blocks, LoRA, QLoRA) have requires_grad=False and DDP skips them; every
        # trainable parameter gets a gradient each step in all modes, with or without activation
        # checkpointing, so the costly unused-parameter search stays off (DDP would fail loudly otherwise:
        # 2-process runs in tests/test_train_e2e.py and tests/test_adapters.py).
        ddp_find_unused_parameters=False,
        **own,
        **training.extra_args,
    )


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
    summary: DataSummary,
) -> Trainer:
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
        compute_metrics=trainer_metrics,
        compute_loss_func=class_weighted_loss(summary.class_weights) if summary.class_weights else None,
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
            raise SpamTuneError(f"training.resume_from_checkpoint={setting} is not a checkpoint dir")
        return setting
    last = get_last_checkpoint(str(run.checkpoints)) if run.checkpoints.is_dir() else None
    if last is None:
        raise SpamTuneError(
            f"training.resume_from_checkpoint=true but {run.checkpoints} holds no checkpoint; "
            "drop the option to start fresh"
        )
    return last


def run(cfg: RunConfig) -> RunResult:
    """Train and evaluate as configured; returns the run dir and the metrics written to metrics.json."""
    started = time.time()
    run_dir = check_run_dir(
        Path(cfg.output.dir), overwrite=cfg.output.overwrite, resume=bool(cfg.training.resume_from_checkpoint)
    )
    set_seed(cfg.training.seed)
    # Everything that can fail on user input happens before the run dir exists.
    args = build_training_arguments(cfg, run_dir)
    check_evaluation_config(cfg)
    resume = resume_checkpoint(cfg.training.resume_from_checkpoint, run_dir)
    splits, summary = load_splits(cfg.data)
    tokenizer = load_tokenizer(cfg.model)
    cache_dir = Path(cfg.data.cache_dir).expanduser()
    tokenized = tokenize_splits(
        splits,
        tokenizer,
        cfg.model.max_length,
        cache_dir=cache_dir / "tokenized",
        main_process_first=args.main_process_first,
    )
    model = load_model(
        cfg.model,
        cfg.data.id2label,
        tokenizer.pad_token_id,
        cache_dir=cache_dir,
        adapter=cfg.adapter,
        main_process_first=args.main_process_first,
    )
    trainable, total = count_parameters(model)
    if args.should_save:
        write_run_inputs(cfg, run_dir, splits, summary)

    trainer = build_trainer(cfg, model, tokenizer, tokenized, args, summary)
    train_output = trainer.train(resume_from_checkpoint=resume)
    evaluation = evaluate_run(trainer, splits, tokenized, cfg)
    metrics = evaluation.to_json(cfg.evaluation.threshold)
    metrics["parameters"] = {"trainable": trainable, "total": total, "mode": cfg.model.mode}
    metrics["training"] = {k: v for k, v in train_output.metrics.items() if isinstance(v, (int, float))}
    metrics["training"]["best_checkpoint"] = trainer.state.best_model_checkpoint
    metrics["data"] = summary.to_dict()
    if cfg.output.save_model:
        save_final_model(trainer, tokenizer, cfg, run_dir, threshold=evaluation.threshold)
    if args.should_save:
        environment = environment_info() | {"wall_seconds": round(time.time() - started, 2)}
        write_json(run_dir.environment, environment)
        write_run_artifacts(run_dir, cfg, evaluation, metrics, environment)
        write_json(run_dir.metrics, metrics)  # last: its presence marks a finished run
        log.info("wrote %s", run_dir.metrics)
    return RunResult(run_dir, metrics)


def write_run_inputs(cfg: RunConfig, run: RunDir, splits: Any, summary: DataSummary) -> None:
    """The resolved config and the exact split, so the run can be reproduced and audited."""
    write_text_atomic(run.config, cfg.to_yaml())
    write_split_csvs(splits, run.data)
    write_json(run.data / "summary.json", summary.to_dict())


def save_final_model(
    trainer: Trainer, tokenizer: Any, cfg: RunConfig, run: RunDir, *, threshold: Threshold | None = None
) -> None:
    """Save the best model (or adapter) with its tokenizer and what predict/serve need to use it."""
    trainer.save_model(str(run.model))  # a peft model saves its adapter + head
    if trainer.args.should_save:
        tokenizer.save_pretrained(str(run.model))
        metadata = model_metadata(cfg, threshold)
        if cfg.model.mode in ("lora", "qlora"):
            from pipeline.adapters import save_adapter_extras

            # Which base to rebuild and how; a from-config base is saved under model/base.
            metadata |= save_adapter_extras(
                trainer.model,
                run.model,
                base_dtype=cfg.model.dtype,
                adapter=cfg.adapter if cfg.model.mode == "qlora" else None,
            )
        write_json(run.model / MODEL_METADATA, metadata)


def model_metadata(cfg: RunConfig, threshold: Threshold | None = None) -> dict[str, Any]:
    """What ``Classifier`` needs beside the weights, including the decision threshold chosen on validation."""
    return {
        "mode": cfg.model.mode,
        "base_model": cfg.model.name_or_path if cfg.model.from_config is None else None,
        "max_length": cfg.model.max_length,
        "id2label": {str(k): v for k, v in cfg.data.id2label.items()},
        "positive_label": cfg.evaluation.positive_label,
        "threshold": None if threshold is None else threshold.value,
        "threshold_strategy": "argmax" if threshold is None else threshold.strategy,
    }
