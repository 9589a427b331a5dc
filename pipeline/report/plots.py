"""PNG figures with matplotlib's Agg canvas: training curves, confusion matrix, score curves.

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot``), so nothing touches
matplotlib's global backend or figure registry: safe on headless machines, in tests and in threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

DPI = 110
MODEL_COLOR = "tab:blue"
OTHER_COLOR = "tab:orange"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _examples_axis(ax: Any, rows_per_epoch: int | None) -> None:
    """A top axis in examples seen, as in the book's figures."""
    if rows_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda e: e * rows_per_epoch, lambda x: x / rows_per_epoch))
        top.set_xlabel("examples seen")


def plot_loss(
    history: list[dict[str, Any]], logged: list[tuple[float, float]], path: Path, rows_per_epoch: int | None = None
) -> Path | None:
    """Train and validation loss per epoch (+ the running loss of the logging steps, faint)."""
    train = [(r["epoch"], r["train_loss"]) for r in history if "train_loss" in r]
    val = [(r["epoch"], r["validation_loss"]) for r in history if "validation_loss" in r]
    if not (train or val or logged):
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    if logged:
        ax.plot(*zip(*logged, strict=True), color=MODEL_COLOR, alpha=0.3, lw=1, label="training (running, per step)")
    if train:
        ax.plot(*zip(*train, strict=True), "o-", color=MODEL_COLOR, label="train")
    if val:
        ax.plot(*zip(*val, strict=True), "s--", color=OTHER_COLOR, label="validation")
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss per epoch")
    _examples_axis(ax, rows_per_epoch)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy(history: list[dict[str, Any]], path: Path, rows_per_epoch: int | None = None) -> Path | None:
    """Train and validation accuracy per epoch (the book's second figure)."""
    train = [(r["epoch"], r["train_accuracy"]) for r in history if "train_accuracy" in r]
    val = [(r["epoch"], r["validation_accuracy"]) for r in history if "validation_accuracy" in r]
    if not (train or val):
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train, strict=True), "o-", color=MODEL_COLOR, label="train")
    if val:
        ax.plot(*zip(*val, strict=True), "s--", color=OTHER_COLOR, label="validation")
    ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy per epoch")
    ax.yaxis.set_major_formatter(lambda y, _: f"{y:.0%}")
    _examples_axis(ax, rows_per_epoch)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrix(matrix: list[list[int]], names: list[str], path: Path, title: str) -> Path:
    """Counts with the row share (recall of each true class) in every cell."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 1.1 * len(names)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    for i, j in np.ndindex(counts.shape):
        color = "white" if shares[i, j] > 0.5 else "black"
        ax.text(j, i, f"{int(counts[i, j])}\n{shares[i, j]:.1%}", ha="center", va="center", color=color)
    ticks = range(len(names))
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return _save(fig, path)


def plot_scores(
    positives: np.ndarray,
    scores: np.ndarray,
    path: Path,
    *,
    title: str,
    positive_name: str = "positive",
    negative_name: str = "negative",
    threshold: float | None = None,
    baseline_scores: np.ndarray | None = None,
) -> Path | None:
    """Score histogram per true class, ROC curve and precision-recall curve (binary only).

    ``positives``: 1 where the true class is the positive one; ``scores``: p(positive). The baseline's
    SVM margins are not probabilities, so it appears only in the ROC and PR panels (they use ranks).
    """
    positives = np.asarray(positives, dtype=int)
    scores = np.asarray(scores, dtype=float)
    if positives.min(initial=1) == positives.max(initial=0):
        return None  # one class only: no curves
    fig = Figure(figsize=(14, 4.2))
    hist, roc, pr = fig.subplots(1, 3)
    bins = np.linspace(0, 1, 26)
    hist.hist(scores[positives == 0], bins=bins, alpha=0.6, color=MODEL_COLOR, label=f"true {negative_name}")
    hist.hist(scores[positives == 1], bins=bins, alpha=0.6, color=OTHER_COLOR, label=f"true {positive_name}")
    cut = 0.5 if threshold is None else threshold
    hist.axvline(cut, color="black", ls=":", label=f"threshold {cut:.3g}")
    hist.set(xlabel=f"p({positive_name})", ylabel="rows", title="Score distribution")
    hist.set_yscale("symlog")
    hist.legend(fontsize="small")

    curves = [("fine-tuned model", scores, MODEL_COLOR, 2.0, 3)]
    if baseline_scores is not None:  # drawn below the model's curve, dashed, so both stay visible when equal
        curves.append(("TF-IDF baseline", np.asarray(baseline_scores, dtype=float), "tab:green", 1.5, 2))
    for label, values, color, width, z in curves:
        style = {"color": color, "lw": width, "zorder": z, "ls": "-" if z == 3 else "--"}
        fpr, tpr, _ = roc_curve(positives, values)
        roc.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(positives, values):.3f})", **style)
        precision, recall, _ = precision_recall_curve(positives, values)
        pr.plot(recall, precision, label=f"{label} (AP {average_precision_score(positives, values):.3f})", **style)
    predicted = scores >= cut
    tpr_at = predicted[positives == 1].mean()
    fpr_at = predicted[positives == 0].mean()
    precision_at = positives[predicted].mean() if predicted.any() else 1.0
    roc.plot([fpr_at], [tpr_at], "ko", zorder=4, label="model at threshold")
    pr.plot([tpr_at], [precision_at], "ko", zorder=4, label="model at threshold")
    roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", ylim=(0, 1.02))
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower left" if ax is pr else "lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
