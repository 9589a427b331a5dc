"""``run(cfg)``: the training workflow, each stage called once, in the order data flows.

    config -> data (DatasetDict) -> tokens -> model -> train -> evaluation -> report -> export (-> push)

Stages hand each other plain values (a DatasetDict, a model, an Evaluation, a metrics dict); this module only
calls them in order. Anything that can fail on user input (config, data, model name) fails before the run
directory is created. Under DDP every process runs this function; only the main one writes files.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import Trainer, set_seed

from pipeline.commands.timing import Stages, imports_recompile, seconds_since_process_start
from pipeline.config import RunConfig
from pipeline.data.split import DataSummary, load_splits, write_split_csvs
from pipeline.data.tokenize import load_tokenizer, tokenize_splits
from pipeline.errors import PushError, TrainingInterrupted
from pipeline.evaluation.metrics import trainer_metrics
from pipeline.evaluation.predictions import Evaluation, evaluate_run
from pipeline.export.trained import export_run_model, run_metadata
from pipeline.fileio import write_atomic, write_json
from pipeline.model.head import head_label_token_ids
from pipeline.model.load import load_model
from pipeline.model.modes import count_parameters
from pipeline.report.builder import write_run_report
from pipeline.rundir import (
    RESUME_FLAG,
    RunDir,
    check_run_dir,
    clear_interrupted,
    clear_previous_run,
    environment_info,
    library_versions,
    mark_interrupted,
)
from pipeline.train.arguments import build_training_arguments
from pipeline.train.history import epoch_seconds
from pipeline.train.interrupt import SignalStop, StopOnSignal, StoppedAfterCheckpoint
from pipeline.train.trainer import build_trainer, last_complete_checkpoint, resume_checkpoint

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: RunDir
    metrics: dict[str, Any]


def run(cfg: RunConfig) -> RunResult:
    """Train, evaluate, report and export as configured; returns the run dir and the metrics of metrics.json."""
    started = time.time()
    run_dir = check_run_dir(
        Path(cfg.output.dir), overwrite=cfg.output.overwrite, resume=bool(cfg.training.resume_from_checkpoint)
    )
    stages = Stages()
    stages.seconds["start_up"] = seconds_since_process_start() or 0.0  # interpreter + imports
    set_seed(cfg.training.seed)
    args = build_training_arguments(cfg, run_dir)
    recompiles = warn_if_imports_recompile(main=args.should_save)
    if cfg.hub.push_at_end:
        from pipeline.export.push import resolve_token  # the Hub client only when a push is asked for

        resolve_token()  # no token: say so now, not after training
    resume = resume_checkpoint(cfg.training.resume_from_checkpoint, run_dir)
    with stages("data"):
        splits, summary = load_splits(cfg.data)
    with stages("tokenize"):
        tokenizer = load_tokenizer(cfg.model)
        cache_dir = Path(cfg.data.cache_dir).expanduser()
        tokenized = tokenize_splits(
            splits,
            tokenizer,
            cfg.model.max_length,
            cache_dir=cache_dir / "tokenized",
            main_process_first=args.main_process_first,
        )
    with stages("model"):
        model = load_model(
            cfg.model,
            cfg.data.id2label,
            tokenizer.pad_token_id,
            cache_dir=cache_dir,
            adapter=cfg.adapter,
            main_process_first=args.main_process_first,
            label_token_ids=head_label_token_ids(cfg.model, cfg.data.id2label, tokenizer),
            problem_type=cfg.data.problem_type if cfg.data.is_multi_label else None,
        )
    parameters = count_parameters(model)
    main = args.should_save
    if main:
        if cfg.output.overwrite and resume is None:
            clear_previous_run(run_dir)
        write_run_inputs(cfg, run_dir, splits, summary)

    trainer = build_trainer(
        cfg, model, tokenizer, tokenized, args, compute_metrics=metrics_for(cfg), class_weights=summary.class_weights
    )
    with stages("train"):
        train_output = train_until_done_or_signalled(trainer, resume, run_dir, main)
    with stages("evaluate"):
        evaluation = evaluate_run(trainer, splits, tokenized, cfg)
    metrics = run_metrics(cfg, evaluation, trainer, train_output.metrics, summary, parameters)

    if main:
        with stages("report"):
            trainer.state.save_to_json(str(run_dir.root / "trainer_state.json"))  # the full log, step by step
            environment = environment_info() | batch_layout(trainer) | {"torch_threads": torch.get_num_threads()}
            environment["imports_compiled_from_source"] = recompiles
            environment["wall_seconds"] = round(time.time() - started, 2)
            environment["stages_seconds"] = stages.to_dict()
            write_run_report(run_dir, cfg, evaluation, metrics, environment)
    if cfg.output.save_model:
        with stages("export"):
            export_trained(cfg, run_dir, trainer, tokenizer, evaluation, metrics)
    if main:
        environment["stages_seconds"] = stages.to_dict()
        environment["wall_seconds"] = round(time.time() - started, 2)
        write_json(run_dir.environment, environment)
        write_json(run_dir.metrics, metrics)  # last: its presence marks a finished run
        clear_interrupted(run_dir)
        log.info("wrote %s", run_dir.metrics)
        if cfg.hub.push_at_end:
            push_finished_run(run_dir, cfg)
    return RunResult(run_dir, metrics)


def metrics_for(cfg: RunConfig) -> Any:
    """What scores each validation pass: argmax metrics, or multi-label ones at 0.5 per label."""
    if cfg.data.is_multi_label:
        from pipeline.evaluation.multilabel import multilabel_trainer_metrics

        return multilabel_trainer_metrics(cfg.data.id2label)
    return trainer_metrics


def warn_if_imports_recompile(main: bool) -> bool:
    """Say so when every start compiles transformers from source: a fixed ~9 s per run that one command removes.

    Every DDP process pays it, but only the main one says so (one line, not one per GPU)."""
    recompiles = imports_recompile(transformers)
    if recompiles and main:
        site_packages = Path(transformers.__file__).parent.parent
        log.warning(
            "Python compiles transformers (and what it imports) from source in every process here: no bytecode is "
            "installed and none may be written (PYTHONDONTWRITEBYTECODE or a read-only site-packages); that costs "
            "~9 s per start on 2 CPU cores. Compile once: python -m compileall -q -j 0 %s",
            site_packages,
        )
    return recompiles


def train_until_done_or_signalled(trainer: Trainer, resume: str | None, run: RunDir, main: bool) -> Any:
    """``trainer.train``; SIGINT/SIGTERM end it at a step boundary with a checkpoint and raise TrainingInterrupted."""
    output = None
    with SignalStop() as stop:
        stopper = StopOnSignal(stop, trainer.accelerator)
        trainer.add_callback(stopper)
        try:
            output = trainer.train(resume_from_checkpoint=resume)
        except StoppedAfterCheckpoint:
            pass
        except TrainingInterrupted as err:  # a second signal: stopped at once
            if main:
                mark_interrupted(run, f"{err}; rerun the same command with {RESUME_FLAG} to continue")
            raise
    signum = stopper.signum or stop.signum  # a signal after the last step: training is done, but stop as asked
    if signum is None:
        return output
    # The main process wrote the checkpoint (the others may get here while it still writes): only it looks.
    checkpoint = last_complete_checkpoint(run) if main else None
    state = trainer.state
    kept = f"checkpoint {checkpoint} is kept" if checkpoint else "no complete checkpoint was written yet"
    message = (
        f"{signal.Signals(signum).name} stopped training at step {state.global_step} (epoch {state.epoch or 0:.2f}); "
        f"{kept}"
    )
    if main:
        mark_interrupted(run, f"{message}; rerun the same command with {RESUME_FLAG} to continue")
    raise TrainingInterrupted(message, signum=signum, checkpoint=str(checkpoint) if checkpoint else None)


def push_finished_run(run: RunDir, cfg: RunConfig) -> str:
    """``hub.push_at_end``: the run is complete on disk whatever happens here, so a failure says how to retry."""
    from pipeline.export.push import push_model

    try:
        url = push_model(run.root, str(cfg.hub.repo_id), private=cfg.hub.private)
    except PushError as err:
        raise PushError(
            f"{err} (the run itself finished: push it later with spam-tune push {run.root} --repo-id {cfg.hub.repo_id})"
        ) from None
    log.info("pushed the model to %s", url)
    return url


def write_run_inputs(cfg: RunConfig, run: RunDir, splits: Any, summary: DataSummary) -> None:
    """The resolved config and the exact split, so the run can be reproduced and audited."""
    write_atomic(run.config, cfg.to_yaml())
    write_split_csvs(splits, run.data, cfg.data if cfg.data.is_multi_label else None)
    write_json(run.data / "summary.json", summary.to_dict())


def batch_layout(trainer: Trainer) -> dict[str, Any]:
    """Processes and the effective batch: what one optimizer step averages over (per device x processes x
    accumulation), the number that the learning rate goes with; and how the processes share the work."""
    args = trainer.args
    processes = max(args.world_size, 1)
    layout = {
        "distributed_type": str(trainer.accelerator.distributed_type.value),
        "processes": processes,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "effective_batch_size": args.per_device_train_batch_size * processes * args.gradient_accumulation_steps,
    }
    budget = getattr(trainer, "train_batches", None)
    if budget is not None:  # batches of varying size: effective_batch_size is the most rows of a step
        rows = budget.mean_rows * processes * args.gradient_accumulation_steps
        layout |= {"train_batch_tokens": budget.max_tokens, "mean_rows_per_step": round(rows, 1)}
    return layout


def training_summary(trainer: Trainer, train_metrics: dict[str, Any]) -> dict[str, Any]:
    """Trainer's numbers for metrics.json, the batch layout, the best step and the peak GPU memory."""
    summary = {k: v for k, v in train_metrics.items() if isinstance(v, (int, float))}
    summary |= batch_layout(trainer)
    summary["best_checkpoint"] = trainer.state.best_model_checkpoint
    summary["best_step"] = trainer.state.best_global_step
    summary["best_metric"] = trainer.state.best_metric
    summary["attn_implementation"] = getattr(trainer.model.config, "_attn_implementation", None)  # sdpa expected
    summary["epoch_seconds"] = epoch_seconds(trainer)  # training steps only; the first epoch includes warm-up
    if torch.cuda.is_available() and not trainer.args.use_cpu:
        summary["peak_cuda_memory_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return summary


def run_metrics(
    cfg: RunConfig,
    evaluation: Evaluation,
    trainer: Trainer,
    train_metrics: dict[str, Any],
    summary: DataSummary,
    parameters: tuple[int, int],
) -> dict[str, Any]:
    """The content of ``metrics.json``: metrics per split, baseline, threshold, history, training facts."""
    metrics = evaluation.to_json(cfg.evaluation.threshold)
    metrics["parameters"] = {"trainable": parameters[0], "total": parameters[1], "mode": cfg.model.mode}
    metrics["training"] = training_summary(trainer, train_metrics)
    metrics["data"] = summary.to_dict()
    return metrics


def export_trained(
    cfg: RunConfig, run: RunDir, trainer: Trainer, tokenizer: Any, evaluation: Evaluation, metrics: dict[str, Any]
) -> Path:
    """``<run>/model`` through the export stage; every process takes part (gathering weights is collective)."""
    metadata = run_metadata(
        cfg,
        trainer.model,
        threshold=evaluation.threshold,
        metrics=metrics,
        versions=library_versions(),
        label_thresholds=evaluation.label_thresholds,
    )
    return export_run_model(
        run,
        cfg,
        model=trainer.model,
        save_weights=lambda folder: trainer.save_model(str(folder)),  # a peft model saves its adapter + head
        tokenizer=tokenizer,
        metadata=metadata,
        metrics=metrics,
        is_main_process=trainer.args.should_save,
    )
