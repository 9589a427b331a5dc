"""Metrics on train / validation / test after training."""

from __future__ import annotations

import logging
from typing import Any

import datasets
import numpy as np
from transformers import Trainer

from pipeline.config import RunConfig
from pipeline.metrics import classification_metrics, softmax

log = logging.getLogger(__name__)


def predict_probabilities(trainer: Trainer, tokenized: datasets.Dataset) -> np.ndarray:
    """Class probabilities for every row (gathered over all DDP ranks, in dataset order)."""
    output = trainer.predict(tokenized, metric_key_prefix="predict")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return softmax(np.asarray(logits, dtype=np.float64))


def evaluate_splits(
    trainer: Trainer, splits: datasets.DatasetDict, tokenized: datasets.DatasetDict, cfg: RunConfig
) -> dict[str, Any]:
    """``{split: metrics}`` for every configured split, using argmax decisions."""
    num_labels = len(cfg.data.id2label)
    positive = cfg.evaluation.positive_label
    results: dict[str, Any] = {}
    for name in cfg.evaluation.splits:
        probs = predict_probabilities(trainer, tokenized[name])
        references = np.asarray(splits[name]["label"])
        results[name] = classification_metrics(
            references,
            probs.argmax(axis=-1),
            num_labels=num_labels,
            positive_label=positive,
            scores=probs[:, positive] if num_labels == 2 else None,
        )
        log.info(
            "%s: accuracy %.4f  precision %.4f  recall %.4f  f1 %.4f",
            name,
            *(results[name][k] for k in ("accuracy", "precision", "recall", "f1")),
        )
    return results
