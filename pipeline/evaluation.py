"""Evaluation after training: predictions per split, metrics, decision threshold, baseline, artifacts.

``evaluate_run`` runs on every DDP rank (``trainer.predict`` is collective and returns gathered
predictions); the rest is plain numpy on the result. ``write_run_artifacts`` must only run on the
main process: it writes the plots, ``report.md``, the model card and the threshold into the run dir.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import Trainer

from pipeline.baseline import BaselineResult, baseline_scores, run_baseline
from pipeline.config import RunConfig
from pipeline.errors import ConfigError
from pipeline.history import epoch_history, step_losses
from pipeline.metrics import classification_metrics, softmax
from pipeline.rundir import MODEL_METADATA, RunDir, write_text_atomic
from pipeline.thresholds import Threshold, apply_threshold, choose_threshold

log = logging.getLogger(__name__)
SPLIT_ORDER = ("train", "validation", "test")


def check_evaluation_config(cfg: RunConfig) -> None:
    """Checks that need both the labels and the evaluation settings (run before any work starts)."""
    num_labels = len(cfg.data.id2label)
    positive = cfg.evaluation.positive_label
    if positive >= num_labels:
        raise ConfigError(
            f"evaluation.positive_label={positive} is not a class id; data.labels has ids 0..{num_labels - 1}"
        )
    if cfg.evaluation.threshold != "argmax" and num_labels != 2:
        raise ConfigError(
            f"evaluation.threshold={cfg.evaluation.threshold} needs two classes, data.labels has {num_labels}; "
            "use evaluation.threshold=argmax"
        )


@dataclass
class SplitPredictions:
    """One split's texts, true class ids and predicted class probabilities (rows in dataset order)."""

    texts: list[str]
    labels: np.ndarray
    probabilities: np.ndarray

    def decisions(self, threshold: float | None = None, positive_label: int = 1) -> np.ndarray:
        return apply_threshold(self.probabilities, threshold, positive_label)


def predict_probabilities(trainer: Trainer, tokenized: datasets.Dataset) -> np.ndarray:
    """Class probabilities for every row (gathered over all DDP ranks, in dataset order)."""
    output = trainer.predict(tokenized, metric_key_prefix="predict")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return softmax(np.asarray(logits, dtype=np.float64))


def predict_splits(
    trainer: Trainer, splits: datasets.DatasetDict, tokenized: datasets.DatasetDict, names: list[str]
) -> dict[str, SplitPredictions]:
    return {
        name: SplitPredictions(
            texts=list(splits[name]["text"]),
            labels=np.asarray(splits[name]["label"], dtype=int),
            probabilities=predict_probabilities(trainer, tokenized[name]),
        )
        for name in names
    }


def split_metrics(
    predictions: SplitPredictions, *, num_labels: int, positive_label: int, threshold: float | None = None
) -> dict[str, Any]:
    """The evaluate module's metrics for one split; ROC-AUC from p(positive) for binary tasks."""
    return classification_metrics(
        predictions.labels,
        predictions.decisions(threshold, positive_label),
        num_labels=num_labels,
        positive_label=positive_label,
        scores=predictions.probabilities[:, positive_label] if num_labels == 2 else None,
    )


def top_mistakes(
    predictions: SplitPredictions, decisions: np.ndarray, id2label: dict[int, str], n: int
) -> list[dict[str, Any]]:
    """The ``n`` wrong decisions the model was most sure of (confidence = p(predicted class))."""
    confidence = predictions.probabilities[np.arange(len(decisions)), decisions]
    wrong = np.flatnonzero(decisions != predictions.labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:n]
    return [
        {
            "text": predictions.texts[i],
            "label": id2label.get(int(predictions.labels[i]), str(predictions.labels[i])),
            "predicted": id2label.get(int(decisions[i]), str(decisions[i])),
            "confidence": float(confidence[i]),
        }
        for i in order
    ]


@dataclass
class Evaluation:
    """Everything measured after training; ``to_json`` is what goes into metrics.json."""

    predictions: dict[str, SplitPredictions]
    metrics: dict[str, dict[str, Any]]
    """``{split: metrics}`` with argmax decisions, for ``evaluation.splits``."""
    threshold: Threshold | None = None
    threshold_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline: BaselineResult | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    logged_losses: list[tuple[float, float]] = field(default_factory=list)
    seconds: float = 0.0

    def threshold_json(self, strategy: str) -> dict[str, Any]:
        if self.threshold is None:
            return {"strategy": strategy, "value": None}
        return {"chosen_on": "validation", **self.threshold.to_dict(), **self.threshold_metrics}

    def to_json(self, strategy: str) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.metrics)
        if self.baseline is not None:
            out["baseline"] = self.baseline.to_dict()
        out["threshold"] = self.threshold_json(strategy)
        out["history"] = self.history
        return out

    def final_decisions(self, split: str) -> np.ndarray:
        """What the saved model decides (threshold if one was chosen, else argmax)."""
        value = None if self.threshold is None else self.threshold.value
        positive = 1 if self.threshold is None else self.threshold.positive_label
        return self.predictions[split].decisions(value, positive)


def evaluate_run(
    trainer: Trainer, splits: datasets.DatasetDict, tokenized: datasets.DatasetDict, cfg: RunConfig
) -> Evaluation:
    """Predict, score, choose the threshold and fit the baseline, as ``cfg.evaluation`` says."""
    started = time.perf_counter()
    ev = cfg.evaluation
    num_labels = len(cfg.data.id2label)
    positive = ev.positive_label
    needed = set(ev.splits) | ({"validation"} if ev.threshold != "argmax" else set())
    predictions = predict_splits(trainer, splits, tokenized, [s for s in SPLIT_ORDER if s in needed])
    metrics = {
        name: split_metrics(predictions[name], num_labels=num_labels, positive_label=positive) for name in ev.splits
    }
    for name in ev.splits:
        _log_metrics(name, metrics[name])
    result = Evaluation(predictions=predictions, metrics=metrics)
    if ev.threshold != "argmax":
        val = predictions["validation"]
        result.threshold = choose_threshold(
            val.labels,
            val.probabilities[:, positive],
            strategy=ev.threshold,
            positive_label=positive,
            target_precision=ev.target_precision,
        )
        result.threshold_metrics = {
            name: split_metrics(pred, num_labels=2, positive_label=positive, threshold=result.threshold.value)
            for name, pred in predictions.items()
        }
        log.info("threshold %s on validation: %.4f", ev.threshold, result.threshold.value)
    if ev.baseline:
        result.baseline = run_baseline(
            (list(splits["train"]["text"]), splits["train"]["label"]),
            {name: (pred.texts, pred.labels) for name, pred in predictions.items() if name in ev.splits},
            num_labels=num_labels,
            positive_label=positive,
        )
        for name, values in result.baseline.metrics.items():
            _log_metrics(f"baseline {name}", values)
    result.history = epoch_history(trainer.state.log_history)
    result.logged_losses = step_losses(trainer.state.log_history)
    result.seconds = time.perf_counter() - started
    return result


def _log_metrics(name: str, metrics: dict[str, Any]) -> None:
    log.info(
        "%s: accuracy %.4f  precision %.4f  recall %.4f  f1 %.4f",
        name,
        *(metrics[k] for k in ("accuracy", "precision", "recall", "f1")),
    )


# ---------------------------------------------------------------------------------------------
# Artifacts (main process only)


def write_plots(
    plots_dir: Path,
    *,
    evaluation: Evaluation,
    split: str,
    id2label: dict[int, str],
    positive_label: int,
    rows_per_epoch: int | None,
) -> dict[str, Path]:
    """The run's PNGs; returns ``{name: path}`` of those written (curves need data to exist)."""
    from pipeline import plots  # matplotlib is imported only when plots are wanted

    written: dict[str, Path | None] = {
        "loss": plots.plot_loss(evaluation.history, evaluation.logged_losses, plots_dir / "loss.png", rows_per_epoch),
        "accuracy": plots.plot_accuracy(evaluation.history, plots_dir / "accuracy.png", rows_per_epoch),
    }
    pred = evaluation.predictions[split]
    decisions = evaluation.final_decisions(split)
    matrix = classification_metrics(pred.labels, decisions, num_labels=len(id2label))["confusion_matrix"]
    how = "argmax" if evaluation.threshold is None else f"threshold {evaluation.threshold.value:.3f}"
    names = [id2label[i] for i in range(len(id2label))]
    written["confusion_matrix"] = plots.plot_confusion_matrix(
        matrix, names, plots_dir / "confusion_matrix.png", f"Confusion matrix ({split}, {how})"
    )
    if len(id2label) == 2:
        base = evaluation.baseline
        written["scores"] = plots.plot_scores(
            pred.labels == positive_label,
            pred.probabilities[:, positive_label],
            plots_dir / "scores.png",
            title=f"Scores on {split} ({len(pred.labels)} rows)",
            positive_name=id2label[positive_label],
            negative_name=id2label[1 - positive_label],
            threshold=None if evaluation.threshold is None else evaluation.threshold.value,
            baseline_scores=None if base is None else baseline_scores(base.model, pred.texts, positive_label),
        )
    return {name: path for name, path in written.items() if path is not None}


def write_run_artifacts(
    run: RunDir,
    cfg: RunConfig,
    evaluation: Evaluation,
    metrics: dict[str, Any],
    environment: dict[str, Any],
) -> None:
    """Plots, report.md and the model card (main process only); the threshold is saved with the model."""
    from pipeline.modelcard import write_model_card
    from pipeline.report import run_report

    started = time.perf_counter()
    ev = cfg.evaluation
    model_saved = (run.model / MODEL_METADATA).is_file()
    split = "test" if "test" in evaluation.predictions else next(iter(evaluation.predictions))
    id2label = cfg.data.id2label
    plots: dict[str, Path] = {}
    if ev.plots:
        rows = metrics.get("data", {}).get("split_sizes", {}).get("train")
        plots = write_plots(
            run.root / "plots",
            evaluation=evaluation,
            split=split,
            id2label=id2label,
            positive_label=ev.positive_label,
            rows_per_epoch=rows,
        )
    if ev.report:
        mistakes = top_mistakes(
            evaluation.predictions[split], evaluation.final_decisions(split), id2label, ev.num_mistakes
        )
        text = run_report(
            root=run.root,
            cfg=cfg,
            metrics=metrics,
            mistakes=mistakes,
            mistakes_split=split,
            plots=plots,
            environment=environment,
            evaluation_seconds=evaluation.seconds,
        )
        write_text_atomic(run.root / "report.md", text)
    if model_saved:
        write_model_card(run.model, cfg, metrics, model_name=_model_name(cfg, run))
    log.info("wrote plots, report and model card in %.2f s", time.perf_counter() - started)


def _model_name(cfg: RunConfig, run: RunDir) -> str:
    if cfg.hub.repo_id:
        return cfg.hub.repo_id.split("/")[-1]
    return f"spam-tune-{run.root.resolve().name}"
