"""Evaluation after training: predictions per split, metrics, decision threshold, baseline. Writes no files.

``evaluate_run`` runs on every DDP rank (``trainer.predict`` is collective and returns gathered
predictions); the rest is plain numpy on the result. What is written from it (report, plots, the model
folder) is the report and export stages' job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
from transformers import Trainer

from pipeline.config import RunConfig
from pipeline.evaluation.baseline import BaselineResult, run_baseline
from pipeline.evaluation.metrics import classification_metrics, softmax
from pipeline.evaluation.thresholds import Threshold, apply_threshold, choose_threshold
from pipeline.train.batching import length_order
from pipeline.train.history import epoch_history, step_losses

log = logging.getLogger(__name__)
SPLIT_ORDER = ("train", "validation", "test")


@dataclass
class SplitPredictions:
    """One split's texts, true class ids and predicted class probabilities (rows in dataset order)."""

    texts: list[str]
    labels: np.ndarray
    probabilities: np.ndarray

    def decisions(self, threshold: float | None = None, positive_label: int = 1) -> np.ndarray:
        return apply_threshold(self.probabilities, threshold, positive_label)


def predict_probabilities(
    trainer: Trainer, tokenized: datasets.Dataset, transform: Callable[[np.ndarray], np.ndarray] = softmax
) -> np.ndarray:
    """Class probabilities for every row (gathered over all DDP ranks, in dataset order); ``transform`` turns the
    logits into them (softmax; a multi-label model's is one sigmoid per label).

    The rows go through the model longest first, so each batch pads to a similar length (about half the
    tokens of dataset order on SMS data), and come back in dataset order.
    """
    order = length_order(tokenized)
    output = trainer.predict(tokenized.select(order), metric_key_prefix="predict")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    probabilities = np.empty_like(np.asarray(logits, dtype=np.float64))
    probabilities[order] = transform(np.asarray(logits, dtype=np.float64))
    return probabilities


def predict_splits(
    trainer: Trainer,
    splits: datasets.DatasetDict,
    tokenized: datasets.DatasetDict,
    names: list[str],
    transform: Callable[[np.ndarray], np.ndarray] = softmax,
) -> dict[str, SplitPredictions]:
    """Each split's predictions; a multi-label split's ``labels`` are multi-hot rows."""
    return {
        name: SplitPredictions(
            texts=list(splits[name]["text"]),
            labels=np.asarray(splits[name]["label"], dtype=int),
            probabilities=predict_probabilities(trainer, tokenized[name], transform),
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
    label_thresholds: dict[str, float] | None = None
    """Multi-label: the threshold of every label (0.5, or chosen on validation), in label order."""
    label_threshold_strategy: str = "argmax"

    def threshold_json(self, strategy: str) -> dict[str, Any]:
        if self.label_thresholds is not None:
            chosen_on = None if self.label_threshold_strategy == "argmax" else "validation"
            return {"strategy": self.label_threshold_strategy, "chosen_on": chosen_on, "values": self.label_thresholds}
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
        """What the saved model decides (threshold if one was chosen, else argmax; multi-label: multi-hot rows)."""
        if self.label_thresholds is not None:
            from pipeline.evaluation.thresholds import decide_labels

            return decide_labels(self.predictions[split].probabilities, list(self.label_thresholds.values()))
        value = None if self.threshold is None else self.threshold.value
        positive = 1 if self.threshold is None else self.threshold.positive_label
        return self.predictions[split].decisions(value, positive)


def evaluate_run(
    trainer: Trainer, splits: datasets.DatasetDict, tokenized: datasets.DatasetDict, cfg: RunConfig
) -> Evaluation:
    """Predict, score, choose the threshold and fit the baseline, as ``cfg.evaluation`` says."""
    if cfg.data.is_multi_label:
        from pipeline.evaluation.multilabel import evaluate_multilabel_run

        return evaluate_multilabel_run(trainer, splits, tokenized, cfg)
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
