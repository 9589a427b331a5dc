"""Export the model a training run ended with: metadata, card and run files, through the one folder writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from pipeline.config import RunConfig
from pipeline.evaluation.thresholds import Threshold
from pipeline.export.folder import TRAINING_CONFIG, write_model_folder
from pipeline.export.metadata import ModelMetadata
from pipeline.export.modelcard import model_card
from pipeline.rundir import RunDir

_TRAINING_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "epoch", "best_checkpoint", "processes")


def run_metadata(
    cfg: RunConfig,
    model: nn.Module,
    *,
    threshold: Threshold | None,
    metrics: dict[str, Any],
    versions: dict[str, str],
    label_thresholds: dict[str, float] | None = None,
) -> ModelMetadata:
    """What the saved model needs beside its weights, from the run's config and what training produced."""
    metadata = ModelMetadata(
        id2label=dict(cfg.data.id2label),
        positive_label=cfg.evaluation.positive_label,
        threshold=None if threshold is None else threshold.value,
        threshold_strategy="argmax" if threshold is None else threshold.strategy,
        max_length=cfg.model.max_length,
        mode=cfg.model.mode,
        base_model=cfg.model.name_or_path if cfg.model.from_config is None else None,
        pad_token_id=getattr(getattr(model, "config", None), "pad_token_id", None),
        training=_training_summary(metrics),
        versions=versions,
    )
    if cfg.data.is_multi_label:
        metadata.problem_type = cfg.data.problem_type
        metadata.label_thresholds = label_thresholds
        metadata.threshold_strategy = cfg.evaluation.threshold
    if cfg.model.mode in ("lora", "qlora"):
        from pipeline.model.adapters import describe_base

        base = describe_base(model)
        metadata.base_model = base.name
        metadata.pad_token_id = base.pad_token_id
        # A nameless base is saved unquantized beside the adapter, so it reloads in the dtype it was saved in.
        metadata.base_dtype = cfg.model.dtype if base.name is not None else "auto"
        if cfg.model.mode == "qlora":
            metadata.quantization = {
                k: getattr(cfg.adapter, k) for k in ("quant_type", "double_quant", "compute_dtype")
            }
    return metadata


def _training_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    training = metrics.get("training", {})
    summary = {k: training[k] for k in _TRAINING_SUMMARY_KEYS if k in training}
    for split in ("validation", "test"):
        if split in metrics:
            summary[f"{split}_accuracy"] = metrics[split].get("accuracy")
            summary[f"{split}_f1"] = metrics[split].get("f1")
    return summary


def export_run_model(
    run: RunDir,
    cfg: RunConfig,
    *,
    model: nn.Module,
    save_weights: Any,
    tokenizer: PreTrainedTokenizerBase,
    metadata: ModelMetadata,
    metrics: dict[str, Any],
    is_main_process: bool,
) -> Path:
    """Write ``<run>/model``: weights or adapter + head, tokenizer, metadata, card, metrics, report, plots, config."""
    save_base = None
    if metadata.is_adapter and metadata.base_model is None:
        from pipeline.model.adapters import describe_base, save_nameless_base

        info = describe_base(model)
        save_base = lambda out: save_nameless_base(model, info, out)  # noqa: E731 - a one-line hook
    attachments = {"report.md": run.report, "plots": run.plots, TRAINING_CONFIG: run.config}
    return write_model_folder(
        run.model,
        save_weights=save_weights,
        tokenizer=tokenizer,
        metadata=metadata,
        card=model_card(cfg, metrics, model_name=_model_name(cfg, run)),
        metrics=metrics,
        attachments={name: path for name, path in attachments.items() if path.exists()},
        save_nameless_base=save_base,
        is_main_process=is_main_process,
    )


def _model_name(cfg: RunConfig, run: RunDir) -> str:
    if cfg.hub.repo_id:
        return cfg.hub.repo_id.split("/")[-1]
    return f"spam-tune-{run.root.resolve().name}"
