"""``spam-tune evaluate``: score a saved model on one of its run's splits or on any labeled data file.

The workflow of the command: read the rows (data stage), classify them (serve), score them (evaluation), then
write metrics.json, predictions.csv, report.md and plots (report builder) into one output folder. Everything
that can fail on user input (the model path, the data file, its columns and labels, the output dir) fails
before anything is written; the folder is built aside and renamed into place, so ``--out`` holds a complete
evaluation or nothing new.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import (
    MULTI_LABEL,
    MULTI_LABEL_READER_KEYS,
    DataConfig,
    RunConfig,
    load_config,
    with_reader_settings,
)
from pipeline.data.clean import UnknownLabelsError
from pipeline.data.readers import MissingColumnError, read_labeled_file
from pipeline.errors import DataError, SpamTuneError
from pipeline.evaluation.predictions import SplitPredictions
from pipeline.evaluation.saved import SavedEvaluation, score_saved
from pipeline.export.folder import read_folder_metadata, resolve_model_dir
from pipeline.fileio import publish_dir, write_json
from pipeline.markdown import METRIC_COLUMNS
from pipeline.rundir import RunDir

log = logging.getLogger(__name__)
KIND = "spam-tune evaluate"
"""Marks an evaluate output dir in its metrics.json, so a later evaluate may replace it (and nothing else)."""


@dataclass
class Target:
    model_dir: Path
    run: RunDir | None
    cfg: RunConfig | None


@dataclass
class Found:
    """What evaluate found to work on, before reading a row: the model, the data file, where results go."""

    target: Target
    path: Path
    name: str
    out_dir: Path
    is_split: bool
    """A run's saved split CSV (fixed columns) rather than a ``--data`` file."""
    started: float


SPLIT_CSV = {"text_column": "text", "label_column": "label", "header": True, "encoding": "utf-8", "format": "csv"}
"""How a run's split CSVs (written by pipeline.data.split.write_split_csvs) are read, whatever the run's data was."""


def resolve_target(path: str | Path) -> Target:
    """A run dir (with ``model/``) or a model dir (inside a run or standalone)."""
    model_dir = resolve_model_dir(path)
    run = RunDir.containing(model_dir)
    return Target(model_dir=model_dir, run=run, cfg=load_config(run.config) if run else None)


def data_config(
    target: Target,
    id2label: dict[int, str],
    *,
    split_file: bool,
    text_column: str | None,
    label_column: str | None,
    reading: dict[str, Any] | None = None,
) -> DataConfig:
    """How to read the data: the run's data settings (or defaults), the model's labels, the given reading
    settings (``data.encoding=...`` and the like, as for training), then the given columns.

    Raw labels may be the class names (ham/spam) or the class ids (0/1).
    """
    base = target.cfg.data if target.cfg else DataConfig(source="file", path="-")
    names = base.labels if target.cfg else {name: idx for idx, name in id2label.items()}
    labels = {str(i): i for i in id2label if str(i) not in names} | dict(names)
    if split_file:  # the run's split CSVs: columns text, label (name), label_id
        return dataclasses.replace(base, labels=labels, **SPLIT_CSV)
    return with_reader_settings(
        dataclasses.replace(base, labels=labels), reading_columns(base, reading, text_column, label_column)
    )


def reading_columns(
    base: DataConfig, reading: dict[str, Any] | None, text_column: str | None, label_column: str | None
) -> dict[str, Any]:
    """The reading settings with the text and label columns filled in: the given ones (``--text-column``,
    a position once the file has no header), else the run's when the header setting is the run's, else defaults."""
    reading = dict(reading or {})
    header = reading.get("header", base.header)
    if header == base.header:
        columns: dict[str, str | int | None] = {"text_column": base.text_column, "label_column": base.label_column}
    else:  # the run's columns were for the other kind of file: names by default, positions must be given
        columns = (
            {"text_column": "text", "label_column": "label"}
            if header
            else dict.fromkeys(("text_column", "label_column"))
        )
    reading = columns | reading

    def column(given: str | None, default: str | int | None) -> str | int | None:
        if given is None:
            return default
        return int(given) if not header and given.isascii() and given.isdigit() else given  # a position

    reading["text_column"] = column(text_column, reading["text_column"])
    reading["label_column"] = column(label_column, reading["label_column"])
    missing = [key for key in ("text_column", "label_column") if reading[key] is None]
    if missing:
        raise SpamTuneError(
            "data.header=false reads columns by position; also pass "
            + " ".join(f"data.{key}=N" for key in missing)
            + " (0 = first column), e.g. data.text_column=1 data.label_column=0"
        )
    return reading


def read_rows(cfg: DataConfig, path: Path, fmt: str | None, id2label: dict[int, str]) -> pd.DataFrame:
    """The labeled rows; errors give the command's options as the fix (the model's classes are fixed)."""
    try:
        return read_labeled_file(cfg, str(path), fmt)
    except MissingColumnError as err:
        option = "--text-column" if err.key == "text_column" else "--label-column"
        raise DataError(err.message(f"{option} {err.guess}")) from None
    except UnknownLabelsError as err:
        known = ", ".join(f"{name} ({idx})" for idx, name in id2label.items())
        raise DataError(
            f"{err.where}: label value(s) not among the model classes: {err.values}; use {known} as labels"
        ) from None


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
    reading: dict[str, Any] | None = None,
    out: str | None = None,
    batch_size: int = 32,
) -> tuple[dict[str, Any], Path]:
    """Score the model; write metrics.json, predictions.csv, report.md and plots/ to the output dir."""
    started = time.perf_counter()
    if split and data:
        raise SpamTuneError("pass either --split or --data, not both")
    if split and (text_column or label_column or reading):
        raise SpamTuneError(
            "--text-column/--label-column and data.* reading options apply to --data files; a run's splits have "
            "fixed columns"
        )
    target = resolve_target(target_path)
    metadata = read_folder_metadata(target.model_dir)
    id2label = metadata.id2label
    multi_label_keys = [key for key in MULTI_LABEL_READER_KEYS if key in (reading or {})]
    if multi_label_keys and not metadata.is_multi_label:
        raise SpamTuneError(
            f"data.{multi_label_keys[0]} reads multi-label files, but {target.model_dir} is a single-label model; "
            "drop it"
        )
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
    if metadata.is_multi_label:
        from pipeline.commands.evaluate_multilabel import evaluate_multilabel

        found = Found(target=target, path=path, name=name, out_dir=out_dir, is_split=not data, started=started)
        return evaluate_multilabel(
            found,
            text_column=text_column,
            label_column=label_column,
            data_format=data_format,
            reading=reading,
            batch_size=batch_size,
        )
    cfg_data = data_config(
        target, id2label, split_file=not data, text_column=text_column, label_column=label_column, reading=reading
    )
    fmt = data_format or (reading or {}).get("format")
    frame = read_rows(cfg_data, path, fmt if data else None, id2label)

    from pipeline.serve.classifier import Classifier

    # The weights as saved (no --dtype): these metrics describe the saved model, not a half-precision copy of it.
    classifier = Classifier(target.model_dir, batch_size=batch_size)
    texts = frame["text"].tolist()
    predictions = SplitPredictions(
        texts=texts,
        labels=frame["label"].to_numpy(dtype=int),
        probabilities=classifier.probabilities(texts).numpy().astype(np.float64),
    )
    scored = score_saved(
        predictions,
        id2label=id2label,
        threshold=classifier.threshold,
        positive_label=classifier.positive,
        num_mistakes=target.cfg.evaluation.num_mistakes if target.cfg else 20,
        baseline_train=_baseline_train(target, cfg_data),
    )
    result: dict[str, Any] = {
        "kind": KIND,
        "name": name,
        "model_dir": str(target.model_dir),
        "data": str(path),
        "rows": len(texts),
        "threshold": classifier.threshold,
        "positive_label": classifier.positive,
        "metrics": scored.metrics,
    }
    if scored.baseline is not None:
        result["baseline"] = {**scored.baseline_info, "trained_on": str(target.run.data / "train.csv")}
    result["seconds"] = round(time.perf_counter() - started, 3)
    publish_dir(out_dir, lambda tmp: _write_outputs(tmp, result, scored, id2label))
    return result, out_dir


def _baseline_train(target: Target, cfg_data: DataConfig) -> tuple[list[str], np.ndarray] | None:
    """The run's saved train split, to fit the TF-IDF baseline on (None outside a run or when turned off)."""
    if target.run is None or (target.cfg is not None and not target.cfg.evaluation.baseline):
        return None
    train_csv = target.run.data / "train.csv"
    if not train_csv.is_file():
        return None
    split_cfg = dataclasses.replace(cfg_data, **SPLIT_CSV)
    train = read_labeled_file(split_cfg, str(train_csv))
    return train["text"].tolist(), train["label"].to_numpy()


def _write_outputs(tmp: Path, result: dict[str, Any], scored: SavedEvaluation, id2label: dict[int, str]) -> None:
    from pipeline.evaluation.baseline import baseline_scores
    from pipeline.report.builder import ReportView, write_predictions, write_report
    from pipeline.report.render import evaluation_report

    predictions, decisions = scored.predictions, scored.decisions
    positive = result["positive_label"]
    view = ReportView(
        split=result["name"],
        predictions=predictions,
        decisions=decisions,
        id2label=id2label,
        positive_label=positive,
        threshold=result["threshold"],
        baseline_scores=None
        if scored.baseline is None or len(id2label) != 2
        else baseline_scores(scored.baseline.model, predictions.texts, positive),
    )
    model = Path(result["model_dir"]).resolve()

    def render(plots: dict[str, Path]) -> str:
        return evaluation_report(
            root=tmp,
            title=f"{result['name']} with {model.parent.name}/{model.name}",
            result=result,
            names=id2label,
            positive_label=positive,
            mistakes=scored.mistakes,
            plots=plots,
        )

    write_report(tmp, view, render=render)
    write_predictions(tmp / "predictions.csv", predictions, decisions, id2label)
    write_json(tmp / "metrics.json", result)


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the model (and baseline) metrics for the terminal."""
    if result.get("problem_type") == MULTI_LABEL:
        from pipeline.commands.evaluate_multilabel import format_multilabel_table

        return format_multilabel_table(result)
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
