"""Multi-label data: label sets as multi-hot rows, and a split stratified on the label sets.

A text carries zero, one or several labels. They come as one label column (a JSON/parquet list, or a CSV/TSV
string split on ``data.label_separator``; empty = no label) or as one 0/1 column per label
(``data.label_columns``). Either way they become a float row ``[0., 1., 1.]`` per text (the ``labels`` tensor
transformers' BCE loss takes for ``problem_type="multi_label_classification"``).

The split is iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011): the rarest label's rows are
placed first, each into the split that still wants most of that label, so every label keeps its share in
every split, which a random split of a few rare labels does not.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import DataConfig
from pipeline.errors import DataError

SPLITS = ("train", "validation", "test")


def select_label_columns(raw: pd.DataFrame, cfg: DataConfig, where: str) -> pd.DataFrame:
    """``data.label_columns``: the text column plus, as ``label``, each row's tuple of raw 0/1 values."""
    columns = [str(c) for c in raw.columns]
    missing = [c for c in [str(cfg.text_column), *(cfg.label_columns or [])] if c not in columns]
    if missing:
        raise DataError(
            f"{where} has no column(s) {', '.join(repr(c) for c in missing)} (columns found: "
            f"{', '.join(repr(c) for c in columns)}); set data.text_column and data.label_columns to its columns"
        )
    raw = raw.set_axis(columns, axis=1)
    values = raw[list(cfg.label_columns or [])].to_numpy(dtype=object)
    return pd.DataFrame({"text": raw[str(cfg.text_column)], "label": [tuple(row) for row in values]})


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _flag(value: Any) -> float | None:
    """A 0/1 cell as 0.0/1.0 (``1``, ``"1"``, ``1.0``, ``true``); None for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    text = str(value).strip().lower()
    return {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "true": 1.0, "false": 0.0}.get(text)


def _names(value: Any, separator: str) -> list[str]:
    """One label cell as label names: a list as it is, a string split on ``separator``, missing = none."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v).strip() for v in value if not _is_missing(v) and str(v).strip()]
    if _is_missing(value):
        return []
    return [part.strip() for part in str(value).split(separator) if part.strip()]


def multi_hot(raw: pd.Series, cfg: DataConfig, where: str) -> list[list[float]]:
    """Each row's labels as a multi-hot float list in ``cfg.id2label`` order; unknown labels are named."""
    if cfg.label_columns:
        return _from_flag_columns(raw, cfg.label_columns, where)
    lookup = {str(k).strip(): v for k, v in cfg.labels.items()}
    rows = []
    bad: dict[str, int] = {}
    for names in (_names(value, cfg.label_separator) for value in raw):
        row = [0.0] * len(cfg.id2label)
        for name in names:
            if name in lookup:
                row[lookup[name]] = 1.0
            else:
                bad[name] = bad.get(name, 0) + 1
        rows.append(row)
    if bad:
        unknown = pd.Series(bad).sort_values(ascending=False)
        entries = ", ".join(f"{name!r} ({n} row{'s' if n != 1 else ''})" for name, n in unknown.head(5).items())
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        example = "{" + ", ".join(f"{k}: {v}" for k, v in cfg.labels.items()) + f", {unknown.index[0]}: ID" + "}"
        raise UnknownLabelNamesError(
            where,
            f"{entries}{more}",
            f"add every label to data.labels (e.g. data.labels={example}), or check "
            f"data.label_separator={cfg.label_separator!r}",
        )
    return rows


class UnknownLabelNamesError(DataError):
    """Label names that ``data.labels`` does not hold; ``values`` lists them (with row counts) for other advice
    (``spam-tune evaluate``, whose labels are the model's)."""

    def __init__(self, where: str, values: str, fix: str) -> None:
        self.where, self.values = where, values
        super().__init__(f"{where}: label(s) not in data.labels: {values}; {fix}")


def _from_flag_columns(raw: pd.Series, columns: list[str], where: str) -> list[list[float]]:
    rows = []
    for number, cells in enumerate(raw, start=1):
        row = [_flag(cell) for cell in cells]
        if None in row:
            column = columns[row.index(None)]
            raise DataError(
                f"{where}: column {column!r} holds {cells[row.index(None)]!r} in data row {number}, but "
                "data.label_columns need 0 or 1 in every row; fix that row (or drop the column from data.label_columns)"
            )
        rows.append(row)
    return rows


def iterative_split(labels: np.ndarray, fractions: list[float], seed: int) -> dict[str, np.ndarray]:
    """Row indices of train/validation/test, stratified on the label sets (multi-hot ``labels`` [n, K]).

    Rows with no label are dealt last, each to the split furthest below its size. Sizes come out within a
    row or two of ``fractions`` (the label shares take precedence); the result depends only on ``seed``.
    """
    rng = np.random.default_rng(seed)
    y = labels > 0.5
    n = len(y)
    wanted_rows = np.asarray(fractions, dtype=float) * n
    wanted_labels = np.outer(fractions, y.sum(axis=0))  # [split, label]: positives each split still wants
    split_of = np.full(n, -1)
    order = rng.permutation(n)  # random tie-break between rows
    while True:
        left = y[split_of < 0].sum(axis=0)
        if not left.any():
            break
        label = int(np.argmin(np.where(left > 0, left, np.iinfo(np.int64).max)))  # the rarest label left
        for row in order[(split_of[order] < 0) & y[order, label]]:
            split = _most_wanting(wanted_labels[:, label], wanted_rows, rng)
            split_of[row] = split
            wanted_labels[split] -= y[row]
            wanted_rows[split] -= 1
    for row in order[split_of[order] < 0]:
        split = _most_wanting(wanted_rows, wanted_rows, rng)
        split_of[row] = split
        wanted_rows[split] -= 1
    return {name: np.sort(np.flatnonzero(split_of == i)) for i, name in enumerate(SPLITS)}


def _most_wanting(wanted: np.ndarray, wanted_rows: np.ndarray, rng: np.random.Generator) -> int:
    """The split that wants most (of a label), ties to the one wanting most rows, then at random."""
    best = np.flatnonzero(wanted == wanted.max())
    if len(best) > 1:
        best = best[wanted_rows[best] == wanted_rows[best].max()]
    return int(best[0] if len(best) == 1 else rng.choice(best))


def label_counts(labels: np.ndarray, id2label: dict[int, str]) -> dict[str, int]:
    """Rows carrying each label (positives per column)."""
    counts = (np.asarray(labels) > 0.5).sum(axis=0) if len(labels) else np.zeros(len(id2label), dtype=int)
    return {id2label[i]: int(counts[i]) for i in range(len(id2label))}


def positive_weights(train_labels: np.ndarray) -> list[float]:
    """BCE ``pos_weight`` per label from train: negatives / positives (torch's suggested value), so a rare
    label's positives weigh as much in the loss as its negatives."""
    y = np.asarray(train_labels) > 0.5
    positives = y.sum(axis=0).astype(float)
    return [float(w) for w in (len(y) - positives) / np.maximum(positives, 1.0)]


def check_label_counts(totals: dict[str, int], per_split: dict[str, dict[str, int]], minimum: int) -> None:
    """Every label must occur in train (else nothing learns it) and often enough overall to reach every split."""
    short = {name: n for name, n in totals.items() if n < minimum}
    if short:
        raise DataError(
            f"too few rows: {', '.join(f'label {k!r} is on {n} row(s)' for k, n in short.items())} after cleaning "
            f"(need at least {minimum} per label for train/validation/test); add rows with it or drop it from "
            "data.labels"
        )
    never = [name for name, n in per_split["train"].items() if n == 0]
    if never:
        raise DataError(
            f"label {never[0]!r} never occurs in the train split, so the model cannot learn it; add rows with it "
            "or drop it from data.labels"
        )


def joined_names(row: np.ndarray | list[float], id2label: dict[int, str], separator: str) -> str:
    """A multi-hot row as the label string it was read from, e.g. ``toxic|insult`` ('' for no label)."""
    return separator.join(id2label[i] for i, v in enumerate(row) if v > 0.5)
