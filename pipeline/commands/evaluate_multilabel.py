"""``spam-tune evaluate`` on a multi-label model: label sets read by the multi-label readers, decided at the
per-label thresholds saved with the model, scored with the metrics and one-vs-rest baseline of training.

The single-label command (:mod:`pipeline.commands.evaluate`) finds the model, the data file and the output dir,
then hands over here; as there, everything that can fail on user input fails before anything is written, and
the output dir is built aside and renamed into place.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.commands.evaluate import KIND, SPLIT_CSV, Found, Target, reading_columns
from pipeline.config import MULTI_LABEL, DataConfig, with_reader_settings
from pipeline.data.multilabel import UnknownLabelNamesError
from pipeline.data.readers import MissingColumnError, read_labeled_file
from pipeline.errors import DataError
from pipeline.evaluation.predictions import SplitPredictions
from pipeline.export.folder import read_folder_metadata
from pipeline.fileio import publish_dir, write_json


def multilabel_data_config(
    target: Target,
    id2label: dict[int, str],
    *,
    split_file: bool,
    text_column: str | None,
    label_column: str | None,
    reading: dict[str, Any] | None = None,
) -> DataConfig:
    """How to read the label sets: the run's data settings (or defaults), the model's labels by name, the given
    reading settings (``data.label_separator=,`` and the like), then the given columns.

    A run's split CSVs hold one label column, the set joined by the run's ``data.label_separator``. A ``--data``
    file is read with the run's ``data.label_columns`` unless another label column is named.
    """
    names = {name: idx for idx, name in id2label.items()}
    if target.cfg:
        base = target.cfg.data
    else:  # a standalone model folder: its labels, defaults for the rest
        base = DataConfig(source="file", path="-", problem_type=MULTI_LABEL, balance="none", labels=names)
    if split_file:
        return dataclasses.replace(base, labels=names, label_columns=None, **SPLIT_CSV)
    reading = dict(reading or {})
    other_column = label_column is not None or "label_column" in reading or reading.get("header", True) is False
    flags = reading.pop("label_columns", None if other_column else base.label_columns)
    settings = reading_columns(base, reading, text_column, label_column)
    return with_reader_settings(
        dataclasses.replace(base, labels=names, label_columns=None),
        settings | {"label_columns": _in_label_order(flags, id2label)},
    )


def _in_label_order(columns: list[str] | None, id2label: dict[int, str]) -> list[str] | None:
    """``data.label_columns`` in the model's label order (the reader takes column k as label k); they must be
    exactly the model's labels, whatever order the file has them in."""
    if columns is None:
        return None
    labels = [id2label[i] for i in sorted(id2label)]
    if not isinstance(columns, list) or sorted(map(str, columns)) != sorted(labels):
        raise DataError(
            f"data.label_columns={columns} must name one 0/1 column per label of the model ({', '.join(labels)}); "
            f"e.g. data.label_columns=[{','.join(labels)}]"
        )
    return labels


def read_label_sets(cfg: DataConfig, path: str, fmt: str | None, id2label: dict[int, str]) -> pd.DataFrame:
    """The rows with their multi-hot label sets; errors give the command's options as the fix (the labels are
    the model's)."""
    try:
        return read_labeled_file(cfg, path, fmt)
    except MissingColumnError as err:
        option = "--text-column" if err.key == "text_column" else "--label-column"
        raise DataError(err.message(f"{option} {err.guess}")) from None
    except UnknownLabelNamesError as err:
        known = ", ".join(id2label[i] for i in sorted(id2label))
        raise DataError(
            f"{err.where}: label(s) not among the model's labels: {err.values}; use {known}, joined by "
            f"data.label_separator={cfg.label_separator!r} (or set data.label_separator to the file's)"
        ) from None


def evaluate_multilabel(
    found: Found,
    *,
    text_column: str | None,
    label_column: str | None,
    data_format: str | None,
    reading: dict[str, Any] | None,
    batch_size: int,
) -> tuple[dict[str, Any], Path]:
    """Score the multi-label model; write metrics.json, predictions.csv, report.md and plots/ to the output dir."""
    from pipeline.evaluation.multilabel import multilabel_metrics
    from pipeline.serve.classifier import Classifier

    target = found.target
    id2label = read_folder_metadata(target.model_dir).id2label
    cfg_data = multilabel_data_config(
        target,
        id2label,
        split_file=found.is_split,
        text_column=text_column,
        label_column=label_column,
        reading=reading,
    )
    fmt = data_format or (reading or {}).get("format")
    frame = read_label_sets(cfg_data, str(found.path), None if found.is_split else fmt, id2label)
    texts = frame["text"].tolist()
    # The weights as saved (no --dtype), as for a single-label model; it applies the saved per-label thresholds.
    classifier = Classifier(target.model_dir, batch_size=batch_size)
    predictions = SplitPredictions(
        texts=texts,
        labels=np.asarray(frame["label"].tolist(), dtype=int).reshape(len(texts), len(id2label)),
        probabilities=classifier.probabilities(texts).numpy().astype(np.float64),
    )
    decisions = classifier.decide(predictions.probabilities)
    result: dict[str, Any] = {
        "kind": KIND,
        "name": found.name,
        "model_dir": str(target.model_dir),
        "data": str(found.path),
        "rows": len(texts),
        "problem_type": MULTI_LABEL,
        "label_thresholds": {id2label[i]: t for i, t in enumerate(classifier.label_thresholds or [])},
        "metrics": multilabel_metrics(predictions.labels, decisions, id2label, predictions.probabilities),
    }
    baseline = _baseline(target, cfg_data, predictions, id2label)
    if baseline is not None:
        result["baseline"] = baseline
    result["seconds"] = round(time.perf_counter() - found.started, 3)

    def build(tmp: Path) -> None:
        from pipeline.report.multilabel import write_multilabel_evaluation

        write_multilabel_evaluation(tmp, result, predictions, decisions, id2label, cfg_data.label_separator)
        write_json(tmp / "metrics.json", result)

    publish_dir(found.out_dir, build)
    return result, found.out_dir


def _baseline(
    target: Target, cfg_data: DataConfig, predictions: SplitPredictions, id2label: dict[int, str]
) -> dict[str, Any] | None:
    """The one-vs-rest TF-IDF baseline of training, fitted on the run's saved train split (None outside a run or
    when turned off)."""
    from pipeline.evaluation.multilabel import run_multilabel_baseline

    if target.run is None or (target.cfg is not None and not target.cfg.evaluation.baseline):
        return None
    train_csv = target.run.data / "train.csv"
    if not train_csv.is_file():
        return None
    split_cfg = dataclasses.replace(cfg_data, label_columns=None, **SPLIT_CSV)
    if target.cfg is not None:  # the split CSVs join the sets with the run's separator, whatever --data used
        split_cfg = dataclasses.replace(split_cfg, label_separator=target.cfg.data.label_separator)
    train = read_labeled_file(split_cfg, str(train_csv))
    fitted = run_multilabel_baseline(
        (train["text"].tolist(), np.asarray(train["label"].tolist()) > 0.5),
        {"data": (predictions.texts, predictions.labels)},
        id2label,
    )
    return {
        "model": fitted.description,
        "fit_seconds": round(fitted.fit_seconds, 4),
        "metrics": fitted.metrics["data"],
        "trained_on": str(train_csv),
    }


def format_multilabel_table(result: dict[str, Any]) -> str:
    """A plain-text table of the model (and baseline) metrics for the terminal."""
    from pipeline.report.multilabel import SCALARS

    keys = [key for key, _ in SCALARS]
    rows = [("fine-tuned", result["metrics"])]
    if result.get("baseline"):
        rows.append(("TF-IDF baseline", result["baseline"]["metrics"]))
    lines = [f"{'model':<16} {'rows':>6} " + " ".join(f"{k:>12}" for k in keys)]
    for label, metrics in rows:
        lines.append(f"{label:<16} {result['rows']:>6} " + " ".join(f"{metrics[k]:>12.4f}" for k in keys))
    thresholds = ", ".join(f"{name} >= {value:.4f}" for name, value in result["label_thresholds"].items())
    return "\n".join([f"{result['name']}: {result['data']} (multi-label: {thresholds})", *lines])
