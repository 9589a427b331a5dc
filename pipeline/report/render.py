"""``report.md``: a run (or an ``evaluate`` result) as Markdown that reads well on GitHub.

Every section is a small function from plain values (the dicts of ``metrics.json``, the config) to
Markdown, so each can be tested alone; :func:`run_report` and :func:`evaluation_report` assemble them.
Images are linked relative to the report (``plots/*.png``), so the report renders wherever the
directory is browsed: on GitHub, in an IDE, on the Hub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.markdown import MAX_TEXT, METRIC_COLUMNS, cell, duration, join_blocks, metrics_note, percent, table


def metric_rows(entries: list[tuple[str, str, dict[str, Any] | None]]) -> str:
    """``(split, model, metrics)`` rows -> a metrics table in percent; missing entries are skipped."""
    rows = []
    for split, model, metrics in entries:
        if not metrics:
            continue
        support = sum(c["support"] for c in metrics.get("per_class", {}).values()) or "–"
        rows.append([split, model, str(support), *(percent(metrics.get(key)) for key, _ in METRIC_COLUMNS)])
    header = ["Split", "Model", "Rows", *(f"{name} (%)" for _, name in METRIC_COLUMNS)]
    return table(header, rows, ["---", "---", *["---:"] * (len(header) - 2)])


def run_metrics_table(metrics: dict[str, Any], splits: list[str]) -> str:
    baseline = metrics.get("baseline") or {}
    threshold = metrics.get("threshold") or {}
    entries: list[tuple[str, str, dict[str, Any] | None]] = []
    for split in splits:
        entries.append((split, "fine-tuned", metrics.get(split)))
        if threshold.get("value") is not None:
            entries.append((split, f"fine-tuned @ {threshold['value']:.3f}", threshold.get(split)))
        entries.append((split, "TF-IDF baseline", baseline.get(split)))
    return metric_rows(entries)


def per_class_table(metrics: dict[str, Any], names: dict[int, str]) -> str:
    rows = [
        [cell(names.get(int(i), i)), percent(c["precision"]), percent(c["recall"]), percent(c["f1"]), str(c["support"])]
        for i, c in metrics["per_class"].items()
    ]
    return table(["Class", "Precision (%)", "Recall (%)", "F1 (%)", "Support"], rows, ["---", *["---:"] * 4])


def confusion_table(matrix: list[list[int]], names: dict[int, str]) -> str:
    labels = [cell(names.get(i, i)) for i in range(len(matrix))]
    rows = [[f"**{labels[i]}**", *(str(v) for v in row)] for i, row in enumerate(matrix)]
    return table(["true \\ predicted", *labels], rows, ["---", *["---:"] * len(labels)])


def mistakes_table(mistakes: list[dict[str, Any]]) -> str:
    if not mistakes:
        return "No mistakes.\n"
    rows = [
        [str(i), cell(m["text"], MAX_TEXT), cell(m["label"]), cell(m["predicted"]), f"{m['confidence']:.3f}"]
        for i, m in enumerate(mistakes, start=1)
    ]
    return table(["#", "Text", "True", "Predicted", "Confidence"], rows, ["---:", "---", "---", "---", "---:"])


def history_table(history: list[dict[str, Any]]) -> str:
    columns = [
        ("epoch", "Epoch", "{:g}"),
        ("step", "Step", "{}"),
        ("logged_loss", "Running loss", "{:.4f}"),
        ("train_loss", "Train loss", "{:.4f}"),
        ("validation_loss", "Validation loss", "{:.4f}"),
        ("train_accuracy", "Train acc. (%)", None),
        ("validation_accuracy", "Validation acc. (%)", None),
        ("validation_f1", "Validation F1 (%)", None),
    ]
    present = [c for c in columns if any(c[0] in row for row in history)]
    rows = []
    for row in history:
        values = []
        for key, _, fmt in present:
            value = row.get(key)
            values.append("–" if value is None else percent(value) if fmt is None else fmt.format(value))
        rows.append(values)
    return table([name for _, name, _ in present], rows, ["---:"] * len(present))


def data_section(summary: dict[str, Any], dedupe: bool, balance: str) -> str:
    raw = ", ".join(f"{cell(k)} {v:,}" for k, v in summary["class_counts_raw"].items())
    lines = [
        f"- Source: `{summary['source']}`",
        f"- Rows read: {summary['rows_read']:,}; empty texts dropped: {summary['dropped_empty']:,}; "
        f"duplicate texts dropped: {summary['dropped_duplicates']:,} (data.dedupe={str(dedupe).lower()})",
        f"- Classes after cleaning: {raw}; after balancing ({balance}): {summary['rows_after_balance']:,} rows",
        f"- Test texts that also occur verbatim in train: {summary['test_in_train']:,}"
        + (" (data.dedupe=true removes them)" if summary["test_in_train"] else ""),
    ]
    if summary.get("class_weights"):
        lines.append(f"- Loss class weights: {', '.join(f'{w:.3f}' for w in summary['class_weights'])}")
    counts = summary["split_class_counts"]
    classes = list(next(iter(counts.values())).keys())
    rows = [[split, *(f"{per[c]:,}" for c in classes), f"{sum(per.values()):,}"] for split, per in counts.items()]
    return (
        "\n".join(lines)
        + "\n\n"
        + table(["Split", *map(cell, classes), "Total"], rows, ["---", *["---:"] * (len(classes) + 1)])
    )


def config_section(
    cfg: RunConfig, parameters: dict[str, Any] | None, config_yaml: str, training_facts: dict[str, Any] | None = None
) -> str:
    model = cfg.model
    training = cfg.training
    facts = training_facts or {}
    source = "random init " + str(model.from_config) if model.from_config else model.name_or_path
    rows = [
        ["Model", cell(source)],
        [
            "Mode",
            f"{model.mode}" + (f" (last {model.trainable_blocks} block(s))" if model.mode == "last_blocks" else ""),
        ],
        ["Max length", f"{model.max_length} tokens"],
        ["Epochs / max steps", f"{training.num_train_epochs:g} / {training.max_steps}"],
        [
            "Learning rate",
            f"{training.learning_rate:g} ({training.lr_scheduler_type}, warm-up {training.warmup_steps:g})",
        ],
        ["Batch size", _batch_size(training.per_device_train_batch_size, training.gradient_accumulation_steps, facts)],
        ["Weight decay", f"{training.weight_decay:g}"],
        ["Best model by", f"validation {training.metric_for_best_model}"],
        ["Seed", str(training.seed)],
    ]
    if model.mode in ("lora", "qlora"):
        a = cfg.adapter
        rows.insert(
            2, ["Adapter", f"r={a.r}, alpha={a.alpha}, dropout={a.dropout:g}, targets={cell(a.target_modules)}"]
        )
    if parameters:
        share = parameters["trainable"] / max(parameters["total"], 1)
        rows.insert(
            2, ["Trainable parameters", f"{parameters['trainable']:,} of {parameters['total']:,} ({share:.2%})"]
        )
    body = table(["Setting", "Value"], rows)
    return body + (
        "\n<details><summary>Resolved config (<code>config.yaml</code>)</summary>\n\n"
        f"```yaml\n{config_yaml.rstrip()}\n```\n\n</details>\n"
    )


def _batch_size(per_device: int, accumulation: int, facts: dict[str, Any]) -> str:
    """ "32 per device x 2 processes x 1 accumulation step = 64 per optimizer step" (the effective batch)."""
    processes = facts.get("processes", 1)
    per_device = facts.get("per_device_train_batch_size", per_device)
    accumulation = facts.get("gradient_accumulation_steps", accumulation)
    effective = facts.get("effective_batch_size", per_device * processes * accumulation)
    return (
        f"{per_device} per device x {processes} process{'es' if processes != 1 else ''} x {accumulation} "
        f"accumulation step{'s' if accumulation != 1 else ''} = {effective} per optimizer step"
    )


def environment_section(environment: dict[str, Any], timings: list[tuple[str, Any]]) -> str:
    hardware = environment.get("gpu")
    hardware = (
        f"{environment.get('gpu_count', 1)} x {hardware}" if hardware else f"CPU ({environment.get('cpu_count')} cores)"
    )
    rows = [[name, duration(value)] for name, value in timings if value is not None]
    rows += [
        ["Hardware", cell(hardware)],
        ["Python", cell(environment.get("python", "–"))],
        ["Platform", cell(environment.get("platform", "–"))],
    ]
    versions = environment.get("versions", {})
    lib_rows = [[cell(name), cell(version)] for name, version in versions.items()]
    return table(["", ""], rows) + "\n" + table(["Library", "Version"], lib_rows)


def plots_section(plots: dict[str, Path], root: Path) -> str:
    titles = {
        "loss": "Loss per epoch",
        "accuracy": "Accuracy per epoch",
        "confusion_matrix": "Confusion matrix",
        "scores": "Score distribution, ROC and precision-recall curves",
    }
    parts = []
    for name, path in plots.items():
        link = Path(os.path.relpath(path, root)).as_posix()
        parts.append(f"![{titles.get(name, name)}]({link})")
    return ("\n".join(parts) + "\n") if parts else "No plots (evaluation.plots=false).\n"


def decision_line(threshold: dict[str, Any] | None, positive_name: str) -> str:
    if not threshold or threshold.get("value") is None:
        return "Decisions: argmax of the class probabilities."
    how = (
        "best validation F1"
        if threshold["strategy"] == "best_f1"
        else f"validation precision >= {threshold['target_precision']:g}"
        + ("" if threshold.get("target_reached", True) else " (not reached: the most precise threshold is used)")
    )
    return (
        f"Decisions: `{positive_name}` when p({positive_name}) >= {threshold['value']:.4f}, chosen for {how}; "
        "recorded in `model/spam_tune.json`, so `spam-tune predict` applies it."
    )


def summary_line(metrics: dict[str, Any], split: str) -> str:
    model = metrics.get(split) or {}
    base = (metrics.get("baseline") or {}).get(split)
    line = f"**{split.capitalize()} accuracy {percent(model.get('accuracy'))} %** (F1 {percent(model.get('f1'))} %)"
    if base:
        gap = 100 * (model["accuracy"] - base["accuracy"])
        verdict = "ahead of" if gap > 0 else "behind" if gap < 0 else "level with"
        line += (
            f"; the TF-IDF baseline reaches {percent(base['accuracy'])} % "
            f"(fit in {duration(metrics['baseline'].get('fit_seconds'))}): the fine-tuned model is "
            f"{verdict} it" + (f" by {abs(gap):.2f} points." if gap else ".")
        )
    return line + "\n"


def run_report(
    *,
    root: Path,
    cfg: RunConfig,
    metrics: dict[str, Any],
    mistakes: list[dict[str, Any]],
    mistakes_split: str,
    plots: dict[str, Path],
    environment: dict[str, Any],
    evaluation_seconds: float | None = None,
) -> str:
    """The whole ``report.md`` of a training run; ``metrics`` is the content of ``metrics.json``."""
    names = cfg.data.id2label
    positive = names.get(cfg.evaluation.positive_label, str(cfg.evaluation.positive_label))
    splits = [s for s in ("train", "validation", "test") if s in metrics]
    main_split = "test" if "test" in metrics else splits[-1]
    training = metrics.get("training", {})
    parameters = metrics.get("parameters")
    # Per-class scores, confusion matrix and mistakes show what the saved model does: the threshold if
    # one was chosen, else argmax.
    threshold = metrics.get("threshold") or {}
    final = threshold.get(main_split) or metrics[main_split]
    decisions = "argmax" if threshold.get("value") is None else f"threshold {threshold['value']:.3f}"
    sections = [
        f"# spam-tune report: `{root.name}`\n",
        summary_line(metrics, main_split),
        decision_line(metrics.get("threshold"), positive) + "\n",
        "## Metrics\n",
        run_metrics_table(metrics, splits),
        metrics_note(names, cfg.evaluation.positive_label)
        + " Validation picked the best checkpoint"
        + (" and the threshold" if threshold.get("value") is not None else "")
        + ", so test is the unbiased estimate.",
        "## Plots\n",
        plots_section(plots, root),
        f"## Per class ({main_split}, {decisions})\n",
        per_class_table(final, names),
        f"\nConfusion matrix ({main_split}, {decisions}; rows: true class, columns: predicted):\n\n",
        confusion_table(final["confusion_matrix"], names),
    ]
    if metrics.get("history"):
        sections += ["## Training history\n", history_table(metrics["history"])]
        sections.append(
            "\nTrain loss/accuracy: a fixed subset of the train split scored in eval mode at each epoch end; "
            "running loss: mean training loss of the logged steps (dropout on).\n"
        )
    sections += [
        f"## Most confident mistakes ({mistakes_split}, {decisions})",
        f"The {len(mistakes)} wrong decisions the model was most sure of (confidence: p(predicted class))."
        if mistakes
        else "",
        mistakes_table(mistakes),
        "## Data\n",
        data_section(metrics["data"], cfg.data.dedupe, cfg.data.balance),
        "## Configuration\n",
        config_section(cfg, parameters, cfg.to_yaml(), training),
        "## Timing and hardware\n",
        environment_section(
            environment,
            [
                ("Training", training.get("train_runtime")),
                ("Evaluation (all splits)", evaluation_seconds),
                ("Baseline fit", (metrics.get("baseline") or {}).get("fit_seconds")),
                ("Whole run", environment.get("wall_seconds")),
            ],
        ),
    ]
    return join_blocks(sections)


def evaluation_report(
    *,
    root: Path,
    title: str,
    result: dict[str, Any],
    names: dict[int, str],
    positive_label: int,
    mistakes: list[dict[str, Any]],
    plots: dict[str, Path],
) -> str:
    """``report.md`` of ``spam-tune evaluate``: one data set, the model (and baseline) on it."""
    positive = names.get(positive_label, str(positive_label))
    threshold = result.get("threshold")
    baseline = result.get("baseline")
    entries = [(result["name"], "fine-tuned", result["metrics"])]
    if baseline:
        entries.append((result["name"], "TF-IDF baseline", baseline["metrics"]))
    fitted = (
        f"\n- Baseline: {cell(baseline['model'])}, fitted on `{baseline['trained_on']}` "
        f"in {duration(baseline['fit_seconds'])}"
        if baseline
        else ""
    )
    sections = [
        f"# spam-tune evaluation: {cell(title)}\n",
        f"- Model: `{result['model_dir']}`\n- Data: `{result['data']}` ({result['rows']:,} rows){fitted}",
        decision_line(None, positive)
        if threshold is None
        else f"Decisions: `{positive}` when p({positive}) >= {threshold:.4f} (the threshold recorded with the model).",
        "## Metrics\n",
        metric_rows(entries),
        metrics_note(names, positive_label),
        "## Plots\n",
        plots_section(plots, root),
        "## Per class\n",
        per_class_table(result["metrics"], names),
        "\nConfusion matrix (rows: true class, columns: predicted):\n\n",
        confusion_table(result["metrics"]["confusion_matrix"], names),
        "## Most confident mistakes",
        f"The {len(mistakes)} wrong decisions the model was most sure of (confidence: p(predicted class))."
        if mistakes
        else "",
        mistakes_table(mistakes),
    ]
    return join_blocks(sections)
