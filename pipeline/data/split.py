"""Dedupe, balance and split cleaned rows into a ``datasets.DatasetDict`` (train / validation / test).

:func:`load_splits` runs ``read -> clean -> map labels -> (dedupe) -> balance -> split`` and returns the splits
plus a :class:`DataSummary` of what happened to the rows. ``data.split_mode=book`` reproduces Raschka,
*Build a Large Language Model (From Scratch)*, ch. 6 exactly (pandas' default quoting, the same
``DataFrame.sample`` calls with seed 123), so numbers can be compared with the book: on the real file
5,572 rows -> 747 ham + 747 spam -> 1045/149/300.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from pipeline.config import DataConfig
from pipeline.data.clean import clean_and_label
from pipeline.data.readers import read_table
from pipeline.errors import DataError, one_line
from pipeline.fileio import write_atomic

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
MIN_ROWS_PER_CLASS = 3
"""Below this a class cannot land in all three splits, so stop early with a clear message."""


@dataclass
class DataSummary:
    """What happened to the rows between the file and the splits; saved with every run."""

    source: str
    rows_read: int
    dropped_empty: int
    dropped_duplicates: int
    class_counts_raw: dict[str, int]
    rows_after_balance: int
    split_sizes: dict[str, int]
    split_class_counts: dict[str, dict[str, int]]
    test_in_train: int
    class_weights: list[float] | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_splits(cfg: DataConfig) -> tuple[datasets.DatasetDict, DataSummary]:
    """Read, clean, label, (dedupe,) balance and split the data as configured."""
    raw, source = read_table(cfg)
    rows_read = len(raw)
    logger.info("read %d rows from %s", rows_read, source)
    df, dropped_empty = clean_and_label(raw, cfg, source)
    df, dropped_duplicates = _dedupe(df) if cfg.dedupe else (df, 0)
    if cfg.is_multi_label:
        return _multi_label_splits(df, cfg, source, rows_read, dropped_empty, dropped_duplicates)

    names = cfg.id2label
    counts = np.bincount(df["label"].to_numpy(), minlength=len(names))
    class_counts_raw = {names[i]: int(n) for i, n in enumerate(counts)}
    short = {name: n for name, n in class_counts_raw.items() if n < MIN_ROWS_PER_CLASS}
    if short:
        raise DataError(
            f"too few rows: {', '.join(f'{k!r} has {n}' for k, n in short.items())} after cleaning "
            f"(need at least {MIN_ROWS_PER_CLASS} per class for train/validation/test); add data or check data.labels"
        )

    if cfg.balance == "undersample":
        df = _undersample(df, len(names), cfg.seed)
        logger.info("undersampled every class to %d rows", int(counts.min()))

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=[names[i] for i in range(len(names))])}
    )
    if cfg.split_mode == "book":
        splits = _book_split(df, cfg.split, cfg.seed, features)
    else:
        splits = _stratified_split(_to_dataset(df, features), cfg.split, cfg.seed)

    split_counts = {s: np.bincount(np.asarray(splits[s]["label"], dtype=int), minlength=len(names)) for s in SPLITS}
    sizes = {s: len(splits[s]) for s in SPLITS}
    for split, per_class in split_counts.items():
        for i, n in enumerate(per_class):
            if n == 0:
                raise DataError(
                    f"too few rows: the {split} split has no {names[i]!r} rows (split sizes {sizes}); "
                    "add data or change data.split"
                )

    train_texts = set(splits["train"]["text"])
    test_in_train = sum(text in train_texts for text in splits["test"]["text"])
    if test_in_train:
        logger.info("%d test text(s) also occur verbatim in train; data.dedupe=true avoids that", test_in_train)
    weights = _class_weights(split_counts["train"]) if cfg.balance == "class_weights" else None

    summary = DataSummary(
        source=source,
        rows_read=rows_read,
        dropped_empty=dropped_empty,
        dropped_duplicates=dropped_duplicates,
        class_counts_raw=class_counts_raw,
        rows_after_balance=len(df),
        split_sizes=sizes,
        split_class_counts={s: {names[i]: int(n) for i, n in enumerate(c)} for s, c in split_counts.items()},
        test_in_train=test_in_train,
        class_weights=weights,
    )
    logger.info("split sizes %s, class counts %s", summary.split_sizes, summary.split_class_counts)
    return splits, summary


def _dedupe(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    duplicated = df["text"].duplicated(keep="first")
    logger.info("dropped %d duplicate text(s)", int(duplicated.sum()))
    return df.loc[~duplicated].reset_index(drop=True), int(duplicated.sum())


def _multi_label_splits(
    df: pd.DataFrame, cfg: DataConfig, source: str, rows_read: int, dropped_empty: int, dropped_duplicates: int
) -> tuple[datasets.DatasetDict, DataSummary]:
    """Multi-label rows split on their label sets; the summary counts each label's rows (not classes)."""
    from pipeline.data.multilabel import check_label_counts, iterative_split, label_counts, positive_weights

    names = cfg.id2label
    labels = np.asarray(df["label"].tolist(), dtype=np.float32).reshape(len(df), len(names))
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.Sequence(datasets.Value("float32"), length=len(names))}
    )
    rows = iterative_split(labels, cfg.split, cfg.seed)
    splits = datasets.DatasetDict(
        {name: _to_dataset(df.iloc[index].reset_index(drop=True), features) for name, index in rows.items()}
    )
    totals = label_counts(labels, names)
    per_split = {name: label_counts(labels[index], names) for name, index in rows.items()}
    check_label_counts(totals, per_split, MIN_ROWS_PER_CLASS)
    train_texts = set(splits["train"]["text"])
    summary = DataSummary(
        source=source,
        rows_read=rows_read,
        dropped_empty=dropped_empty,
        dropped_duplicates=dropped_duplicates,
        class_counts_raw=totals,
        rows_after_balance=len(df),
        split_sizes={name: len(index) for name, index in rows.items()},
        split_class_counts=per_split,
        test_in_train=sum(text in train_texts for text in splits["test"]["text"]),
        class_weights=positive_weights(labels[rows["train"]]) if cfg.balance == "class_weights" else None,
    )
    logger.info("split sizes %s, rows per label %s", summary.split_sizes, summary.split_class_counts)
    return splits, summary


def _undersample(df: pd.DataFrame, n_classes: int, seed: int) -> pd.DataFrame:
    """Sample every class down to the smallest one, in the book's way.

    The book does ``concat([df[ham].sample(n_spam, random_state=123), df[spam]])``; doing the same per
    class id (classes at the minimum count are kept as they are, in file order) reproduces it exactly.
    """
    parts = [df[df["label"] == k] for k in range(n_classes)]
    n_min = min(len(part) for part in parts)
    return pd.concat([part.sample(n_min, random_state=seed) if len(part) > n_min else part for part in parts])


def _to_dataset(df: pd.DataFrame, features: datasets.Features) -> datasets.Dataset:
    return datasets.Dataset.from_pandas(df[["text", "label"]], features=features, preserve_index=False)


def _book_split(
    df: pd.DataFrame, fractions: list[float], seed: int, features: datasets.Features
) -> datasets.DatasetDict:
    """The book's ``random_split``: shuffle once, then cut at int(n*train) and +int(n*validation)."""
    shuffled = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    train_end = int(len(shuffled) * fractions[0])
    val_end = train_end + int(len(shuffled) * fractions[1])
    parts = {"train": shuffled[:train_end], "validation": shuffled[train_end:val_end], "test": shuffled[val_end:]}
    return datasets.DatasetDict({name: _to_dataset(part, features) for name, part in parts.items()})


def _stratified_split(ds: datasets.Dataset, fractions: list[float], seed: int) -> datasets.DatasetDict:
    """Seeded split that keeps the class proportions in every split (datasets' stratified splitter)."""
    n = len(ds)
    n_classes = ds.features["label"].num_classes
    n_test = round(n * fractions[2])
    n_val = round(n * fractions[1])
    n_train = n - n_val - n_test
    sizes = {"train": n_train, "validation": n_val, "test": n_test}
    small = [name for name, size in sizes.items() if size < n_classes]
    if small:
        raise DataError(
            f"too few rows: {n} rows give split sizes {sizes}, and the {small[0]} split needs at least one row per "
            f"class ({n_classes}); add data or change data.split"
        )
    try:
        # Integer sizes, so rounding is ours (not ceil/floor of float fractions); test first, then
        # validation out of the rest.
        first = ds.train_test_split(test_size=n_test, train_size=n - n_test, stratify_by_column="label", seed=seed)
        second = first["train"].train_test_split(
            test_size=n_val, train_size=n_train, stratify_by_column="label", seed=seed
        )
    except ValueError as err:  # datasets: "least populated class ... has only 1 member" and the like
        raise DataError(
            f"too few rows for a stratified split ({one_line(err)}); add data or change data.split"
        ) from None
    return datasets.DatasetDict({"train": second["train"], "validation": second["test"], "test": first["test"]})


def _class_weights(train_counts: np.ndarray) -> list[float]:
    """Inverse class frequency on train, scaled so the mean weight over classes is 1."""
    inverse = 1.0 / train_counts.astype(float)
    return [float(w) for w in inverse * len(inverse) / inverse.sum()]


# ---------------------------------------------------------------------------------------------
# Writing


def write_split_csvs(
    splits: datasets.DatasetDict, out_dir: Path, multi_label: DataConfig | None = None
) -> dict[str, Path]:
    """Write each split as ``out_dir/<split>.csv`` (text, label name, label_id), atomically per file.

    They read back with :func:`read_labeled_file` given ``data.text_column=text`` and
    ``data.label_column=label`` (the defaults) and the run's ``data.labels``. Multi-label splits (pass their
    ``multi_label`` data config) have columns text and label, the label set joined by ``data.label_separator``.
    """
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    for name, ds in splits.items():
        frame = _multi_label_frame(ds, multi_label) if multi_label is not None else _single_label_frame(ds)
        target = out_dir / f"{name}.csv"
        try:
            write_atomic(target, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        except OSError as err:
            raise DataError(f"cannot write {target} ({one_line(err)}); check that output.dir is writable") from None
        paths[name] = target
    return paths


def _single_label_frame(ds: datasets.Dataset) -> pd.DataFrame:
    ids = [int(i) for i in ds["label"]]
    feature = ds.features["label"]
    labels = feature.int2str(ids) if isinstance(feature, datasets.ClassLabel) else [str(i) for i in ids]
    return pd.DataFrame({"text": list(ds["text"]), "label": labels, "label_id": ids})


def _multi_label_frame(ds: datasets.Dataset, cfg: DataConfig) -> pd.DataFrame:
    from pipeline.data.multilabel import joined_names

    labels = [joined_names(row, cfg.id2label, cfg.label_separator) for row in ds["label"]]
    return pd.DataFrame({"text": list(ds["text"]), "label": labels})
