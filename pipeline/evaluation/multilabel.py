"""Multi-label evaluation: one sigmoid per label, a threshold per label, and the usual multi-label metrics.

The numbers are scikit-learn's (micro/macro/samples F1, subset accuracy, Hamming loss, per-label
precision/recall/F1/ROC-AUC). ``f1`` and ``accuracy`` are micro F1 and subset accuracy, so
``training.metric_for_best_model`` and every table that reads those keys work for both kinds of task.
Writes no files.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import datasets
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support, roc_auc_score
from transformers import EvalPrediction, Trainer

from pipeline.config import RunConfig
from pipeline.evaluation.thresholds import DEFAULT_LABEL_THRESHOLD, Threshold, choose_threshold, sigmoid
from pipeline.evaluation.thresholds import decide_labels as decide

log = logging.getLogger(__name__)
SCALAR_KEYS = ("accuracy", "precision", "recall", "f1", "macro_f1", "samples_f1", "hamming_loss")


def multilabel_metrics(
    references: np.ndarray, predictions: np.ndarray, id2label: dict[int, str], scores: np.ndarray | None = None
) -> dict[str, Any]:
    """Metrics of multi-hot ``predictions`` against multi-hot ``references`` ([rows, labels]); ``scores`` (the
    probabilities, or any ranking) add each label's ROC-AUC where its rows hold both values."""
    y, p = np.asarray(references).astype(int), np.asarray(predictions).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(y, p, average=None, zero_division=0)
    micro = precision_recall_fscore_support(y, p, average="micro", zero_division=0)
    per_label = {
        id2label[j]: {
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": float(f1[j]),
            "roc_auc": _roc_auc(y[:, j], scores[:, j]) if scores is not None else None,
            "support": int(support[j]),
        }
        for j in range(y.shape[1])
    }
    return {
        "accuracy": float(accuracy_score(y, p)),  # subset accuracy: the whole label set right
        "subset_accuracy": float(accuracy_score(y, p)),
        "precision": float(micro[0]),
        "recall": float(micro[1]),
        "f1": float(micro[2]),
        "micro_f1": float(micro[2]),
        "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
        "samples_f1": float(f1_score(y, p, average="samples", zero_division=0)),
        "hamming_loss": float(hamming_loss(y, p)),
        "rows": len(y),
        "per_label": per_label,
    }


def _roc_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(truth, scores)) if 0 < truth.sum() < len(truth) else None


def multilabel_trainer_metrics(id2label: dict[int, str]):
    """``Trainer(compute_metrics=...)`` for multi-label: scalars at the fixed 0.5 thresholds."""

    def compute(eval_pred: EvalPrediction) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        result = multilabel_metrics(eval_pred.label_ids, decide(sigmoid(logits), None), id2label)
        return {key: result[key] for key in SCALAR_KEYS}

    return compute


def choose_label_thresholds(
    labels: np.ndarray, probabilities: np.ndarray, *, strategy: str, target_precision: float
) -> list[Threshold]:
    """One threshold per label on validation, each label treated as its own binary task."""
    return [
        choose_threshold(labels[:, j], probabilities[:, j], strategy=strategy, target_precision=target_precision)
        for j in range(labels.shape[1])
    ]


def evaluate_multilabel_run(
    trainer: Trainer, splits: datasets.DatasetDict, tokenized: datasets.DatasetDict, cfg: RunConfig
):
    """Predict (sigmoid), tune thresholds per label if asked, score the splits and fit the one-vs-rest baseline."""
    from pipeline.evaluation.predictions import SPLIT_ORDER, Evaluation, predict_splits
    from pipeline.train.history import epoch_history, step_losses

    started = time.perf_counter()
    ev, names = cfg.evaluation, cfg.data.id2label
    needed = set(ev.splits) | ({"validation"} if ev.threshold != "argmax" else set())
    predictions = predict_splits(trainer, splits, tokenized, [s for s in SPLIT_ORDER if s in needed], transform=sigmoid)
    thresholds = [DEFAULT_LABEL_THRESHOLD] * len(names)
    chosen: list[Threshold] = []
    if ev.threshold != "argmax":
        val = predictions["validation"]
        chosen = choose_label_thresholds(
            val.labels, val.probabilities, strategy=ev.threshold, target_precision=ev.target_precision
        )
        thresholds = [t.value for t in chosen]
    metrics = {
        name: multilabel_metrics(pred.labels, decide(pred.probabilities, thresholds), names, pred.probabilities)
        for name, pred in predictions.items()
        if name in ev.splits
    }
    for name, values in metrics.items():
        log.info(
            "%s: micro F1 %.4f  macro F1 %.4f  subset accuracy %.4f",
            name,
            values["f1"],
            values["macro_f1"],
            values["accuracy"],
        )
    result = Evaluation(
        predictions=predictions,
        metrics=metrics,
        label_thresholds={names[j]: float(t) for j, t in enumerate(thresholds)},
        label_threshold_strategy=ev.threshold,
    )
    if ev.baseline:
        result.baseline = run_multilabel_baseline(
            (list(splits["train"]["text"]), np.asarray(splits["train"]["label"]) > 0.5),
            {name: (pred.texts, pred.labels) for name, pred in predictions.items() if name in ev.splits},
            names,
        )
    result.history = epoch_history(trainer.state.log_history)
    result.logged_losses = step_losses(trainer.state.log_history)
    result.seconds = time.perf_counter() - started
    return result


def run_multilabel_baseline(
    train: tuple[list[str], np.ndarray], evaluate_on: dict[str, tuple[list[str], Any]], id2label: dict[int, str]
):
    """The TF-IDF + linear SVM baseline one-vs-rest (one SVM per label) on the same split."""
    from sklearn.multiclass import OneVsRestClassifier

    from pipeline.evaluation.baseline import DESCRIPTION, BaselineResult, make_baseline

    model = OneVsRestClassifier(make_baseline())
    started = time.perf_counter()
    model.fit(train[0], train[1].astype(int))
    seconds = time.perf_counter() - started
    metrics = {}
    for name, (texts, labels) in evaluate_on.items():
        margins = model.decision_function(list(texts))
        metrics[name] = multilabel_metrics(labels, (margins > 0).astype(int), id2label, margins)
    return BaselineResult(model=model, fit_seconds=seconds, metrics=metrics, description=f"{DESCRIPTION}, one-vs-rest")
