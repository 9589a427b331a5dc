"""From a batch of logits to TEI-style answers: scores per label, the decided label first.

TEI sorts a text's labels by score. This model also has a decision threshold (chosen on validation and saved
with the model), so the label it *decides* can have the lower probability (e.g. spam at p=0.4 with threshold
0.3). The answer therefore lists the decided label first, then the others by score: clients that read the
first label (as Hugging Face's ``InferenceClient`` and most TEI clients do) get the model's decision, and
every score stays what ``function_to_apply`` says it is.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Transform = Literal["softmax", "sigmoid", "none"]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)  # no overflow for large logits
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def transform_scores(logits: np.ndarray, transform: Transform) -> np.ndarray:
    """Scores as asked: probabilities (softmax), per-label sigmoid, or the raw logits (``none``)."""
    if transform == "softmax":
        return softmax(logits)
    if transform == "sigmoid":
        return sigmoid(logits)
    return logits


def ranked_labels(
    scores: np.ndarray, decision: int, id2label: dict[int, str], top_k: int | None = None
) -> list[dict[str, float | str]]:
    """One text's ``[{"label", "score"}, ...]``: the decided label first, the rest by descending score."""
    others = sorted((i for i in range(len(scores)) if i != decision), key=lambda i: -scores[i])
    order = [decision, *others][:top_k]
    return [{"label": id2label[i], "score": float(scores[i])} for i in order]


def answers(
    logits: np.ndarray,
    decisions: np.ndarray,
    id2label: dict[int, str],
    *,
    transform: Transform = "softmax",
    top_k: int | None = None,
) -> list[list[dict[str, float | str]]]:
    """Per text, its ranked labels (see :func:`ranked_labels`)."""
    scores = transform_scores(np.asarray(logits, dtype=np.float64), transform)
    return [ranked_labels(row, int(d), id2label, top_k) for row, d in zip(scores, decisions, strict=True)]


def label_set_answers(
    logits: np.ndarray,
    decisions: np.ndarray,
    id2label: dict[int, str],
    *,
    transform: Transform = "sigmoid",
    top_k: int | None = None,
) -> list[list[dict[str, float | str]]]:
    """Multi-label: per text every label with its score, the decided ones (at or above their thresholds) first,
    each group by descending score."""
    scores = transform_scores(np.asarray(logits, dtype=np.float64), transform)
    out = []
    for row, chosen in zip(scores, decisions, strict=True):
        order = sorted(range(len(row)), key=lambda i: (not chosen[i], -row[i]))[:top_k]
        out.append([{"label": id2label[i], "score": float(row[i])} for i in order])
    return out
