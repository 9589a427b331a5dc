"""Decision thresholds on the positive-class probability, chosen on validation and applied to test.

A binary classifier's argmax is the threshold 0.5. Spam filtering usually wants something else: a
false positive (a real message lost) costs more than a missed spam, so ``target_precision`` picks the
lowest threshold whose validation precision reaches a target; ``best_f1`` picks the one with the best
validation F1. The rule everywhere (here, :class:`pipeline.predict.Classifier`) is
``positive if p(positive) >= threshold``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Threshold:
    strategy: str
    """``best_f1`` or ``target_precision``."""
    value: float
    """Positive if p(positive) >= value."""
    positive_label: int
    target_precision: float | None
    target_reached: bool
    """False when no threshold reached ``target_precision`` on validation (the most precise one is used)."""
    validation_precision: float
    validation_recall: float
    validation_f1: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_threshold(probabilities: np.ndarray, value: float | None, positive_label: int = 1) -> np.ndarray:
    """Class ids: argmax when ``value`` is None (or not binary), else ``p(positive) >= value``."""
    probabilities = np.asarray(probabilities)
    if value is None or probabilities.shape[-1] != 2:
        return probabilities.argmax(axis=-1)
    positive = probabilities[:, positive_label] >= value
    return np.where(positive, positive_label, 1 - positive_label)


DEFAULT_LABEL_THRESHOLD = 0.5
"""Multi-label: p >= 0.5 is logit >= 0, the sigmoid analogue of argmax, used when no threshold is tuned."""


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def decide_labels(probabilities: np.ndarray, thresholds: list[float] | np.ndarray | None) -> np.ndarray:
    """Multi-label decisions (multi-hot): label ``j`` is on when ``p_j >= thresholds[j]`` (0.5 without thresholds)."""
    limits = DEFAULT_LABEL_THRESHOLD if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return (np.asarray(probabilities) >= limits).astype(int)


def precision_recall_at(labels: np.ndarray, scores: np.ndarray, value: float) -> tuple[float, float, float]:
    """(precision, recall, F1) of ``scores >= value`` against binary ``labels`` (1 = positive)."""
    predicted = scores >= value
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    fn = int(np.sum(~predicted & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def choose_threshold(
    labels: np.ndarray | list[int],
    scores: np.ndarray | list[float],
    *,
    strategy: str,
    positive_label: int = 1,
    target_precision: float = 0.99,
) -> Threshold:
    """Pick a threshold on ``scores`` (p(positive)) for validation ``labels`` (class ids).

    Candidates are the distinct scores (each makes one more group of rows positive). The chosen
    threshold is then moved halfway down to the next lower score, so the decision boundary sits in
    the gap between classes instead of on a validation row, and small score shifts on new data do not
    flip decisions at the edge. Ties between candidates go to the higher threshold (fewer false positives).
    """
    if strategy not in ("best_f1", "target_precision"):
        raise ValueError(f"unknown threshold strategy {strategy!r}")
    positives = (np.asarray(labels) == positive_label).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("choose_threshold needs at least one score")
    candidates = np.unique(scores)[::-1]  # high to low: ties keep the first, i.e. the higher threshold
    stats = [precision_recall_at(positives, scores, c) for c in candidates]
    reached = True
    if strategy == "best_f1":
        best = max(range(len(candidates)), key=lambda i: stats[i][2])
    else:
        meeting = [i for i, (p, _, _) in enumerate(stats) if p >= target_precision]
        reached = bool(meeting)
        if reached:
            best = max(meeting, key=lambda i: stats[i][1])  # most recall among those precise enough
        else:
            best = max(range(len(candidates)), key=lambda i: (stats[i][0], stats[i][1]))
            log.warning(
                "no threshold reaches precision %.3f on validation; using the most precise one (%.3f)",
                target_precision,
                stats[best][0],
            )
    lower = candidates[best + 1] if best + 1 < len(candidates) else 0.0
    value = float((candidates[best] + lower) / 2)
    precision, recall, f1 = precision_recall_at(positives, scores, value)
    return Threshold(
        strategy=strategy,
        value=value,
        positive_label=positive_label,
        target_precision=target_precision if strategy == "target_precision" else None,
        target_reached=reached,
        validation_precision=precision,
        validation_recall=recall,
        validation_f1=f1,
    )
