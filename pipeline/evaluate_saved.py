"""``spam-tune evaluate``: score a saved model on one of its run's splits or on any labeled data file.

Everything that can fail on user input (the model path, the data file, its columns and labels, the
output dir) fails before anything is written. The outputs are built in a temporary sibling dir and
renamed into place at the end, so ``--out`` holds a complete evaluation or nothing new.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.baseline import DESCRIPTION, baseline_scores, run_baseline
from pipeline.config import DataConfig, RunConfig, load_config
from pipeline.data import read_labeled_file
from pipeline.errors import DataError, SpamTuneError
from pipeline.evaluation import SplitPredictions, split_metrics, top_mistakes
from pipeline.fileio import read_json
from pipeline.report import METRIC_COLUMNS, evaluation_report
from pipeline.rundir import RunDir, read_model_metadata, write_json, write_text_atomic

log = logging.getLogger(__name__)
KIND = "spam-tune evaluate"
"""Marks an evaluate output dir in its metrics.json, so a later evaluate may replace it (and nothing else)."""


@dataclass
class Target:
    model_dir: Path
    run: RunDir | None
    cfg: RunConfig | None


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def resolve_target(path: str | Path) -> Target:
    """A run dir (with ``model/``) or a model dir (inside a run or standalone)."""
    given = Path(path).expanduser()
    if not given.exists():
        raise SpamTuneError(f"{given} not found; pass a run dir (e.g. runs/lora) or a model dir (runs/lora/model)")
    if not given.is_dir():
        raise SpamTuneError(f"{given} is a file; pass a run dir (e.g. runs/lora) or a model dir (runs/lora/model)")
    if is_model_dir(given):
        model_dir, root = given, given.parent
    elif is_model_dir(given / "model"):
        model_dir, root = given / "model", given
    else:
        raise SpamTuneError(
            f"{given} is neither a run dir (with model/) nor a model dir (with config.json or adapter_config.json); "
            "pass the output.dir of a finished training run or its model dir"
        )
    run = RunDir(root) if (root / "config.yaml").is_file() else None
    cfg = load_config(run.config) if run else None
    return Target(model_dir=model_dir, run=run, cfg=cfg)


def model_labels(model_dir: Path) -> dict[int, str]:
    """Class id -> name, from the model config (or, for adapter dirs, spam_tune.json)."""
    id2label = read_json(model_dir / "config.json").get("id2label") or {}
    if not id2label:
        id2label = read_model_metadata(model_dir).get("id2label") or {}
    if not id2label:
        raise SpamTuneError(f"{model_dir} does not say its labels (no id2label in config.json or spam_tune.json)")
    return {int(k): v for k, v in id2label.items()}


def data_config(
    target: Target, id2label: dict[int, str], *, split_file: bool, text_column: str | None, label_column: str | None
) -> DataConfig:
    """How to read the data: the run's data settings (or defaults), the model's labels, the given columns.

    Raw labels may be the class names (ham/spam) or the class ids (0/1).
    """
    base = target.cfg.data if target.cfg else DataConfig(source="file", path="-")
    names = base.labels if target.cfg else {name: idx for idx, name in id2label.items()}
    labels = {str(i): i for i in id2label if str(i) not in names} | dict(names)
    if split_file:  # the run's split CSVs: columns text, label (name), label_id
        return dataclasses.replace(base, text_column="text", label_column="label", labels=labels, format="csv")
    return dataclasses.replace(
        base,
        text_column=text_column or base.text_column,
        label_column=label_column or base.label_column,
        labels=labels,
    )


def _cli_hints(message: str, id2label: dict[int, str]) -> str:
    """Data errors name config keys; here the fixes are command-line options or the file itself."""
    message = message.replace("data.text_column=", "--text-column ").replace("data.label_column=", "--label-column ")
    head, sep, _ = message.partition("; map every raw label")
    if sep:  # unknown labels: the model's classes are fixed, so the file has to match them
        known = ", ".join(f"{name} ({idx})" for idx, name in id2label.items())
        message = f"{head.replace('not in data.labels', 'not among the model classes')}; use {known} as labels"
    return message


def output_dir(target: Target, out: str | None, name: str) -> Path:
    if out:
        path = Path(out).expanduser()
    elif target.run:
        path = target.run.root / "eval" / name
    else:
        raise SpamTuneError(f"{target.model_dir} is not inside a run dir; pass --out DIR for the results")
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not _is_eval_output(path))):
        raise SpamTuneError(
            f"--out {path} exists and is not an earlier `spam-tune evaluate` output; choose a new or empty dir"
        )
    return path


def _is_eval_output(path: Path) -> bool:
    try:
        return json.loads((path / "metrics.json").read_text(encoding="utf-8")).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def evaluate_saved_model(
    target_path: str | Path,
    *,
    split: str | None = None,
    data: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    data_format: str | None = None,
    out: str | None = None,
    batch_size: int = 32,
) -> tuple[dict[str, Any], Path]:
    """Score the model; write metrics.json, predictions.csv, report.md and plots/ to the output dir."""
    started = time.perf_counter()
    if split and data:
        raise SpamTuneError("pass either --split or --data, not both")
    if split and (text_column or label_column):
        raise SpamTuneError("--text-column/--label-column apply to --data files; a run's splits have fixed columns")
    target = resolve_target(target_path)
    id2label = model_labels(target.model_dir)
    if data:
        path, name = Path(data).expanduser(), Path(data).stem or "data"
    else:
        split = split or "test"
        if target.run is None:
            raise SpamTuneError(
                f"{target.model_dir} is not inside a run dir, so it has no saved splits; pass --data FILE"
            )
        path, name = target.run.data / f"{split}.csv", split
        if not path.is_file():
            raise SpamTuneError(f"{path} not found; the run did not save its {split} split (pass --data FILE)")
    out_dir = output_dir(target, out, name)
    cfg_data = data_config(target, id2label, split_file=not data, text_column=text_column, label_column=label_column)
    try:
        frame = read_labeled_file(cfg_data, str(path), data_format if data else None)
    except DataError as err:
        raise DataError(_cli_hints(str(err), id2label)) from None
    unknown = sorted(set(frame["label"]) - set(id2label))
    if unknown:
        raise SpamTuneError(f"{path}: class ids {unknown} are not among the model's classes {id2label}")

    from pipeline.predict import Classifier

    classifier = Classifier(target.model_dir, batch_size=batch_size)
    texts = frame["text"].tolist()
    predictions = SplitPredictions(
        texts=texts,
        labels=frame["label"].to_numpy(dtype=int),
        probabilities=classifier.probabilities(texts).numpy().astype(np.float64),
    )
    positive = classifier.positive
    decisions = predictions.decisions(classifier.threshold, positive)
    result: dict[str, Any] = {
        "kind": KIND,
        "name": name,
        "model_dir": str(target.model_dir),
        "data": str(path),
        "rows": len(texts),
        "threshold": classifier.threshold,
        "positive_label": positive,
        "metrics": split_metrics(
            predictions, num_labels=len(id2label), positive_label=positive, threshold=classifier.threshold
        ),
    }
    baseline = _baseline(target, cfg_data, predictions, len(id2label), positive)
    if baseline:
        result["baseline"] = {k: v for k, v in baseline.items() if k != "model_object"}
    result["seconds"] = round(time.perf_counter() - started, 3)
    mistakes = top_mistakes(predictions, decisions, id2label, target.cfg.evaluation.num_mistakes if target.cfg else 20)
    _publish(
        out_dir,
        lambda tmp: _write_outputs(tmp, out_dir, result, predictions, decisions, id2label, mistakes, baseline),
    )
    return result, out_dir


def _baseline(
    target: Target, cfg_data: DataConfig, predictions: SplitPredictions, num_labels: int, positive: int
) -> dict[str, Any] | None:
    """The TF-IDF baseline fitted on the run's saved train split, scored on the same rows."""
    if target.run is None or (target.cfg is not None and not target.cfg.evaluation.baseline):
        return None
    train_csv = target.run.data / "train.csv"
    if not train_csv.is_file():
        return None
    split_cfg = dataclasses.replace(cfg_data, text_column="text", label_column="label", format="csv")
    train = read_labeled_file(split_cfg, str(train_csv))
    fitted = run_baseline(
        (train["text"].tolist(), train["label"].to_numpy()),
        {"data": (predictions.texts, predictions.labels)},
        num_labels=num_labels,
        positive_label=positive,
    )
    return {
        "model": DESCRIPTION,
        "trained_on": str(train_csv),
        "fit_seconds": round(fitted.fit_seconds, 4),
        "metrics": fitted.metrics["data"],
        "model_object": fitted.model,
    }


def _write_outputs(
    tmp: Path,
    final: Path,
    result: dict[str, Any],
    predictions: SplitPredictions,
    decisions: np.ndarray,
    id2label: dict[int, str],
    mistakes: list[dict[str, Any]],
    baseline: dict[str, Any] | None,
) -> None:
    from pipeline import plots

    positive = result["positive_label"]
    names = [id2label[i] for i in range(len(id2label))]
    how = "argmax" if result["threshold"] is None else f"threshold {result['threshold']:.3f}"
    written = {
        "confusion_matrix": plots.plot_confusion_matrix(
            result["metrics"]["confusion_matrix"],
            names,
            tmp / "plots" / "confusion_matrix.png",
            f"Confusion matrix ({result['name']}, {how})",
        )
    }
    if len(names) == 2:
        scores_png = plots.plot_scores(
            predictions.labels == positive,
            predictions.probabilities[:, positive],
            tmp / "plots" / "scores.png",
            title=f"Scores on {result['name']} ({result['rows']} rows)",
            positive_name=id2label[positive],
            negative_name=id2label[1 - positive],
            threshold=result["threshold"],
            baseline_scores=None
            if baseline is None
            else baseline_scores(baseline["model_object"], predictions.texts, positive),
        )
        if scores_png:
            written["scores"] = scores_png
    table = {
        "text": predictions.texts,
        "label": [id2label[int(i)] for i in predictions.labels],
        "predicted": [id2label[int(i)] for i in decisions],
        "confidence": predictions.probabilities[np.arange(len(decisions)), decisions],
    }
    table |= {f"p_{id2label[i]}": predictions.probabilities[:, i] for i in range(len(names))}
    write_text_atomic(tmp / "predictions.csv", pd.DataFrame(table).to_csv(index=False, lineterminator="\n"))
    # Plot links are written relative to the report, so they stay valid after the rename.
    model = Path(result["model_dir"]).resolve()
    report = evaluation_report(
        root=tmp,
        title=f"{result['name']} with {model.parent.name}/{model.name}",
        result=result,
        names=id2label,
        positive_label=positive,
        mistakes=mistakes,
        plots=written,
    )
    write_text_atomic(tmp / "report.md", report)
    write_json(tmp / "metrics.json", result)


def _publish(out: Path, write) -> None:
    """Build the output in a temp dir next to ``out``, then swap it in (old output removed last)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    old = None
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the output is meant to be shared like the run dir
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "previous")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not out.exists():
            os.replace(old / "previous", out)  # put the earlier output back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the model (and baseline) metrics for the terminal."""
    keys = [k for k, _ in METRIC_COLUMNS]
    rows = [("fine-tuned", result["metrics"])]
    if result.get("baseline"):
        rows.append(("TF-IDF baseline", result["baseline"]["metrics"]))
    lines = [f"{'model':<16} {'rows':>6} " + " ".join(f"{k:>9}" for k in keys)]
    for label, metrics in rows:
        values = " ".join(f"{metrics[k]:>9.4f}" if k in metrics else f"{'-':>9}" for k in keys)
        lines.append(f"{label:<16} {result['rows']:>6} {values}")
    decision = "argmax" if result["threshold"] is None else f"p(positive) >= {result['threshold']:.4f}"
    return "\n".join([f"{result['name']}: {result['data']} ({decision})", *lines])
