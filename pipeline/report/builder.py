"""The one report builder: plots and ``report.md`` for a training run (``train``) or a saved model (``evaluate``).

Both commands describe one split's predictions the same way (confusion matrix, score curves against the
baseline, most confident mistakes); a training run adds its per-epoch curves and the sections only a run has
(history, data, config, timing), which :mod:`pipeline.report.render` turns into Markdown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import RunConfig
from pipeline.evaluation.baseline import baseline_scores
from pipeline.evaluation.metrics import classification_metrics
from pipeline.evaluation.predictions import Evaluation, SplitPredictions, top_mistakes
from pipeline.fileio import write_atomic
from pipeline.rundir import RunDir

log = logging.getLogger(__name__)


def predictions_frame(predictions: SplitPredictions, decisions: np.ndarray, id2label: dict[int, str]) -> pd.DataFrame:
    """One row per text, in split order: text, true label, the model's decision, its confidence, and ``p_<label>``
    per class (what error analysis or a threshold chosen later needs, without running the model again)."""
    table = {
        "text": predictions.texts,
        "label": [id2label[int(i)] for i in predictions.labels],
        "predicted": [id2label[int(i)] for i in decisions],
        "confidence": predictions.probabilities[np.arange(len(decisions)), decisions],
    }
    return pd.DataFrame(table | {f"p_{id2label[i]}": predictions.probabilities[:, i] for i in range(len(id2label))})


def write_predictions(
    path: Path, predictions: SplitPredictions, decisions: np.ndarray, id2label: dict[int, str]
) -> None:
    """The one writer of predictions CSV files (``<run>/predictions/<split>.csv``, ``evaluate``'s
    ``predictions.csv``)."""
    write_atomic(path, predictions_frame(predictions, decisions, id2label).to_csv(index=False, lineterminator="\n"))


@dataclass
class ReportView:
    """What a report shows: one split's predictions as the saved model decides them, and the run's curves."""

    split: str
    predictions: SplitPredictions
    decisions: np.ndarray
    id2label: dict[int, str]
    positive_label: int
    threshold: float | None = None
    baseline_scores: np.ndarray | None = None
    """The baseline's decision values on the same rows, for the ROC/PR curves (binary tasks)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    logged_losses: list[tuple[float, float]] = field(default_factory=list)
    rows_per_epoch: int | None = None


def write_report(
    out_dir: Path,
    view: ReportView,
    *,
    plots: bool = True,
    render: Callable[[dict[str, Path]], str] | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/plots/*.png`` (if ``plots``) and ``out_dir/report.md`` (``render(plots)``, if given)."""
    started = time.perf_counter()
    written = write_plots(out_dir / "plots", view) if plots else {}
    if render is not None:
        # Plot links are relative to the report, so they stay valid when the folder is moved or copied.
        write_atomic(out_dir / "report.md", render(written))
    log.info("wrote report and %d plot(s) to %s in %.2f s", len(written), out_dir, time.perf_counter() - started)
    return written


def write_plots(plots_dir: Path, view: ReportView) -> dict[str, Path]:
    """The PNGs that have data to show; returns ``{name: path}`` of those written."""
    from pipeline.report import plots  # matplotlib is imported only when plots are wanted

    written: dict[str, Path | None] = {
        "loss": plots.plot_loss(view.history, view.logged_losses, plots_dir / "loss.png", view.rows_per_epoch),
        "accuracy": plots.plot_accuracy(view.history, plots_dir / "accuracy.png", view.rows_per_epoch),
    }
    pred = view.predictions
    matrix = classification_metrics(pred.labels, view.decisions, num_labels=len(view.id2label))["confusion_matrix"]
    how = "argmax" if view.threshold is None else f"threshold {view.threshold:.3f}"
    names = [view.id2label[i] for i in range(len(view.id2label))]
    written["confusion_matrix"] = plots.plot_confusion_matrix(
        matrix, names, plots_dir / "confusion_matrix.png", f"Confusion matrix ({view.split}, {how})"
    )
    if len(names) == 2:
        positive = view.positive_label
        written["scores"] = plots.plot_scores(
            pred.labels == positive,
            pred.probabilities[:, positive],
            plots_dir / "scores.png",
            title=f"Scores on {view.split} ({len(pred.labels)} rows)",
            positive_name=view.id2label[positive],
            negative_name=view.id2label[1 - positive],
            threshold=view.threshold,
            baseline_scores=view.baseline_scores,
        )
    return {name: path for name, path in written.items() if path is not None}


def write_run_report(
    run: RunDir, cfg: RunConfig, evaluation: Evaluation, metrics: dict[str, Any], environment: dict[str, Any]
) -> dict[str, Path]:
    """A training run's plots and ``report.md`` (main process only), on the test split when it was scored, and
    ``predictions/<split>.csv`` for every scored split."""
    if cfg.data.is_multi_label:
        from pipeline.report.multilabel import write_multilabel_run_report

        return write_multilabel_run_report(run, cfg, evaluation, metrics, environment)
    from pipeline.report.render import run_report

    ev = cfg.evaluation
    for name, scored in evaluation.predictions.items():
        write_predictions(run.predictions / f"{name}.csv", scored, evaluation.final_decisions(name), cfg.data.id2label)
    split = "test" if "test" in evaluation.predictions else next(iter(evaluation.predictions))
    predictions = evaluation.predictions[split]
    decisions = evaluation.final_decisions(split)
    base = evaluation.baseline
    view = ReportView(
        split=split,
        predictions=predictions,
        decisions=decisions,
        id2label=cfg.data.id2label,
        positive_label=ev.positive_label,
        threshold=None if evaluation.threshold is None else evaluation.threshold.value,
        baseline_scores=None
        if base is None or len(cfg.data.id2label) != 2
        else baseline_scores(base.model, predictions.texts, ev.positive_label),
        history=evaluation.history,
        logged_losses=evaluation.logged_losses,
        rows_per_epoch=metrics.get("data", {}).get("split_sizes", {}).get("train"),
    )
    mistakes = top_mistakes(predictions, decisions, cfg.data.id2label, ev.num_mistakes)

    def render(plots: dict[str, Path]) -> str:
        return run_report(
            root=run.root,
            cfg=cfg,
            metrics=metrics,
            mistakes=mistakes,
            mistakes_split=split,
            plots=plots,
            environment=environment,
            evaluation_seconds=evaluation.seconds,
        )

    return write_report(run.root, view, plots=ev.plots, render=render if ev.report else None)
