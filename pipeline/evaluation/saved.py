"""Scoring a saved model on labeled rows (``spam-tune evaluate``): metrics, baseline, mistakes. Writes no files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.evaluation.baseline import DESCRIPTION, BaselineResult, run_baseline
from pipeline.evaluation.predictions import SplitPredictions, split_metrics, top_mistakes
from pipeline.evaluation.thresholds import apply_threshold


@dataclass
class SavedEvaluation:
    predictions: SplitPredictions
    decisions: np.ndarray
    metrics: dict[str, Any]
    mistakes: list[dict[str, Any]]
    baseline: BaselineResult | None = None
    baseline_info: dict[str, Any] = field(default_factory=dict)


def score_saved(
    predictions: SplitPredictions,
    *,
    id2label: dict[int, str],
    threshold: float | None,
    positive_label: int,
    num_mistakes: int,
    baseline_train: tuple[list[str], np.ndarray] | None = None,
) -> SavedEvaluation:
    """Metrics of the saved model's decisions (its threshold, else argmax) and, given train rows, the baseline's."""
    num_labels = len(id2label)
    decisions = apply_threshold(predictions.probabilities, threshold, positive_label)
    result = SavedEvaluation(
        predictions=predictions,
        decisions=decisions,
        metrics=split_metrics(predictions, num_labels=num_labels, positive_label=positive_label, threshold=threshold),
        mistakes=top_mistakes(predictions, decisions, id2label, num_mistakes),
    )
    if baseline_train is not None:
        result.baseline = run_baseline(
            baseline_train,
            {"data": (predictions.texts, predictions.labels)},
            num_labels=num_labels,
            positive_label=positive_label,
        )
        result.baseline_info = {
            "model": DESCRIPTION,
            "fit_seconds": round(result.baseline.fit_seconds, 4),
            "metrics": result.baseline.metrics["data"],
        }
    return result
