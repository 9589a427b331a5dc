"""A multi-label run's report: predictions CSVs, plots (loss, per-label F1 against the baseline) and ``report.md``.

The binary/multi-class report's confusion matrix and score curves have no multi-label counterpart that reads
at a glance; a per-label table (precision, recall, F1, ROC-AUC, support, threshold) takes their place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import RunConfig
from pipeline.evaluation.predictions import Evaluation, SplitPredictions
from pipeline.fileio import write_atomic
from pipeline.markdown import cell, duration, join_blocks, percent, table
from pipeline.rundir import RunDir

SCALARS = (
    ("f1", "Micro F1"),
    ("macro_f1", "Macro F1"),
    ("samples_f1", "Samples F1"),
    ("accuracy", "Subset accuracy"),
    ("hamming_loss", "Hamming loss"),
)
METRICS_NOTE = (
    "Micro F1 pools every (text, label) decision; macro F1 averages the labels; samples F1 averages the texts; "
    "subset accuracy counts texts whose whole label set is right; Hamming loss is the share of wrong (text, label) "
    "decisions (lower is better).\n"
)


def multilabel_predictions_frame(
    predictions: SplitPredictions, decisions: np.ndarray, id2label: dict[int, str], separator: str
) -> pd.DataFrame:
    """One row per text: text, true label set, predicted label set (joined by ``separator``), ``p_<label>`` each."""
    from pipeline.data.multilabel import joined_names

    table_ = {
        "text": predictions.texts,
        "label": [joined_names(row, id2label, separator) for row in predictions.labels],
        "predicted": [joined_names(row, id2label, separator) for row in decisions],
    }
    return pd.DataFrame(table_ | {f"p_{id2label[j]}": predictions.probabilities[:, j] for j in range(len(id2label))})


def metrics_table(metrics: dict[str, Any], splits: list[str]) -> str:
    rows = []
    baseline = metrics.get("baseline") or {}
    for split in splits:
        for model, values in (("fine-tuned", metrics.get(split)), ("TF-IDF baseline", baseline.get(split))):
            if values:
                rows.append([split, model, str(values["rows"]), *(percent(values[k]) for k, _ in SCALARS)])
    header = ["Split", "Model", "Rows", *(f"{name} (%)" for _, name in SCALARS)]
    return table(header, rows, ["---", "---", *["---:"] * (len(header) - 2)])


def per_label_table(
    split_metrics: dict[str, Any], thresholds: dict[str, float], baseline: dict[str, Any] | None
) -> str:
    rows = []
    for name, values in split_metrics["per_label"].items():
        auc = values["roc_auc"]
        base_f1 = (baseline or {}).get("per_label", {}).get(name, {}).get("f1")
        rows.append(
            [
                cell(name),
                f"{thresholds.get(name, 0.5):.3f}",
                percent(values["precision"]),
                percent(values["recall"]),
                percent(values["f1"]),
                "–" if auc is None else percent(auc),
                str(values["support"]),
                percent(base_f1),
            ]
        )
    header = [
        "Label",
        "Threshold",
        "Precision (%)",
        "Recall (%)",
        "F1 (%)",
        "ROC-AUC (%)",
        "Support",
        "Baseline F1 (%)",
    ]
    return table(header, rows, ["---", *["---:"] * (len(header) - 1)])


def label_counts_table(summary: dict[str, Any]) -> str:
    per_split = summary["split_class_counts"]
    names = list(summary["class_counts_raw"])
    rows = [[cell(n), *(str(per_split[s][n]) for s in per_split), str(summary["class_counts_raw"][n])] for n in names]
    sizes = summary["split_sizes"]
    rows.append(["**rows**", *(str(sizes[s]) for s in per_split), str(summary["rows_after_balance"])])
    return table(["Label", *per_split, "all"], rows, ["---", *["---:"] * (len(per_split) + 1)])


def plot_per_label_f1(split_metrics: dict[str, Any], baseline: dict[str, Any] | None, path: Path) -> Path:
    from matplotlib.figure import Figure

    from pipeline.report.plots import MODEL_COLOR, OTHER_COLOR, _save

    names = list(split_metrics["per_label"])
    x = np.arange(len(names))
    fig = Figure(figsize=(max(5, 0.8 * len(names) + 2), 4))
    ax = fig.add_subplot()
    ax.bar(x - 0.2, [split_metrics["per_label"][n]["f1"] for n in names], 0.4, color=MODEL_COLOR, label="fine-tuned")
    if baseline:
        ax.bar(x + 0.2, [baseline["per_label"][n]["f1"] for n in names], 0.4, color=OTHER_COLOR, label="baseline")
    ax.set(xticks=x, ylim=(0, 1), ylabel="F1", title="F1 per label")
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def write_multilabel_run_report(
    run: RunDir, cfg: RunConfig, evaluation: Evaluation, metrics: dict[str, Any], environment: dict[str, Any]
) -> dict[str, Path]:
    """``predictions/<split>.csv`` for every scored split, then plots and ``report.md`` as configured."""
    from pipeline.report.render import environment_section, history_table, plots_section

    names, separator = cfg.data.id2label, cfg.data.label_separator
    for name, scored in evaluation.predictions.items():
        frame = multilabel_predictions_frame(scored, evaluation.final_decisions(name), names, separator)
        write_atomic(run.predictions / f"{name}.csv", frame.to_csv(index=False, lineterminator="\n"))
    splits = [s for s in ("train", "validation", "test") if s in metrics]
    main = "test" if "test" in metrics else splits[-1]
    baseline = (metrics.get("baseline") or {}).get(main)
    plots: dict[str, Path] = {}
    if cfg.evaluation.plots:
        from pipeline.report import plots as plot

        rows = metrics["data"]["split_sizes"]["train"]
        loss = plot.plot_loss(evaluation.history, evaluation.logged_losses, run.plots / "loss.png", rows)
        plots = {"loss": loss} if loss else {}
        plots["per_label_f1"] = plot_per_label_f1(metrics[main], baseline, run.plots / "per_label_f1.png")
    if cfg.evaluation.report:
        thresholds = evaluation.label_thresholds or {}
        how = "0.5 per label" if evaluation.label_threshold_strategy == "argmax" else "per-label thresholds"
        sections = [
            f"# spam-tune report: `{run.root.name}` (multi-label)\n",
            f"Test micro F1 **{percent(metrics[main]['f1'])} %**, subset accuracy {percent(metrics[main]['accuracy'])} "
            f"% on {metrics[main]['rows']} {main} rows; labels decided at {how} "
            f"({evaluation.label_threshold_strategy}).\n",
            "## Metrics\n",
            metrics_table(metrics, splits),
            METRICS_NOTE,
            f"## Per label ({main})\n",
            per_label_table(metrics[main], thresholds, baseline),
            "## Plots\n",
            plots_section(plots, run.root),
        ]
        if metrics.get("history"):
            sections += ["## Training history\n", history_table(metrics["history"])]
        sections += [
            "## Data: rows per label and split\n",
            label_counts_table(metrics["data"]),
            "## Timing and hardware\n",
            environment_section(environment, [("Whole run", environment.get("wall_seconds"))]),
        ]
        write_atomic(run.report, join_blocks(sections))
    return plots


def write_multilabel_evaluation(
    out_dir: Path,
    result: dict[str, Any],
    predictions: SplitPredictions,
    decisions: np.ndarray,
    id2label: dict[int, str],
    separator: str,
) -> dict[str, Path]:
    """``spam-tune evaluate`` of a multi-label model: ``predictions.csv``, ``plots/per_label_f1.png`` and
    ``report.md`` in ``out_dir`` (``result`` is the command's metrics.json content)."""
    frame = multilabel_predictions_frame(predictions, decisions, id2label, separator)
    write_atomic(out_dir / "predictions.csv", frame.to_csv(index=False, lineterminator="\n"))
    baseline = (result.get("baseline") or {}).get("metrics")
    plots = {"per_label_f1": plot_per_label_f1(result["metrics"], baseline, out_dir / "plots" / "per_label_f1.png")}
    write_atomic(out_dir / "report.md", multilabel_evaluation_report(out_dir, result, plots))
    return plots


def multilabel_evaluation_report(root: Path, result: dict[str, Any], plots: dict[str, Path]) -> str:
    """``report.md`` of ``spam-tune evaluate`` on a multi-label model: one data set, the model (and baseline) on it."""
    from pipeline.report.render import plots_section

    name, metrics, baseline = result["name"], result["metrics"], result.get("baseline")
    model = Path(result["model_dir"]).resolve()
    fitted = (
        f"\n- Baseline: {cell(baseline['model'])}, fitted on `{baseline['trained_on']}` "
        f"in {duration(baseline['fit_seconds'])}"
        if baseline
        else ""
    )
    thresholds = result.get("label_thresholds") or {}
    sections = [
        f"# spam-tune evaluation: {cell(f'{name} with {model.parent.name}/{model.name}')} (multi-label)\n",
        f"- Model: `{result['model_dir']}`\n- Data: `{result['data']}` ({result['rows']:,} rows){fitted}",
        "Decisions: each label is on when its sigmoid >= its threshold recorded with the model "
        f"({', '.join(f'{label} {value:.3f}' for label, value in thresholds.items())}).",
        "## Metrics\n",
        metrics_table({name: metrics, "baseline": {name: baseline["metrics"]} if baseline else {}}, [name]),
        METRICS_NOTE,
        f"## Per label ({name})\n",
        per_label_table(metrics, thresholds, baseline["metrics"] if baseline else None),
        "## Plots\n",
        plots_section(plots, root),
    ]
    return join_blocks(sections)
