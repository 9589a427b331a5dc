"""Metrics through the ``evaluate`` library, offline: the metric module ships inside this package."""

from __future__ import annotations

import uuid
from functools import cache
from pathlib import Path
from typing import Any

import evaluate
import numpy as np
from transformers import EvalPrediction

METRIC_PATH = Path(__file__).parent / "evaluate_modules" / "spam_metrics"
SCALAR_KEYS = ("accuracy", "precision", "recall", "f1")


@cache
def load_metric() -> evaluate.EvaluationModule:
    # keep_in_memory + a unique experiment id: evaluate would otherwise share one cache file between
    # the ranks of a DDP run (and between concurrent runs) and block on its lock.
    return evaluate.load(str(METRIC_PATH), keep_in_memory=True, experiment_id=uuid.uuid4().hex)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def classification_metrics(
    references: np.ndarray | list[int],
    predictions: np.ndarray | list[int],
    *,
    num_labels: int = 2,
    positive_label: int = 1,
    scores: np.ndarray | list[float] | None = None,
) -> dict[str, Any]:
    """All metrics for one split (see the evaluate module's docstring for the keys)."""
    return load_metric().compute(
        predictions=[int(p) for p in predictions],
        references=[int(r) for r in references],
        num_labels=num_labels,
        positive_label=positive_label,
        scores=None if scores is None else [float(s) for s in scores],
    )


def trainer_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """``Trainer(compute_metrics=...)``: flat scalars only (they go into logs and checkpoint selection)."""
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    result = classification_metrics(eval_pred.label_ids, np.argmax(logits, axis=-1), num_labels=logits.shape[-1])
    return {key: result[key] for key in SCALAR_KEYS}
