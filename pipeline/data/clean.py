"""Clean a read table: drop empty texts, map raw labels to class ids (unknown labels are named)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd
import yaml

from pipeline.config import DataConfig
from pipeline.errors import DataError

logger = logging.getLogger(__name__)


def clean_and_label(df: pd.DataFrame, cfg: DataConfig, where: str) -> tuple[pd.DataFrame, int]:
    """Drop empty texts, then map raw labels to ids: columns ``text`` (str) and ``label`` (int; multi-label: a
    multi-hot list of floats)."""
    df, dropped = _drop_empty_texts(df)
    if df.empty:
        # Typically the wrong column or format (e.g. a CSV read as the UCI TSV), not really empty data.
        raise DataError(f"{where}: all {dropped} texts are empty; check data.format and data.text_column")
    if dropped:
        logger.info("%s: dropped %d empty text(s)", where, dropped)
    if cfg.is_multi_label:
        from pipeline.data.multilabel import multi_hot

        return df.assign(label=multi_hot(df["label"], cfg, where)), dropped
    return df.assign(label=_map_labels(df["label"], cfg, where)), dropped


def _drop_empty_texts(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    text = df["text"]
    missing = text.isna()
    # JSON/parquet may hold numbers as texts; the model only ever sees strings.
    as_str = text.where(~missing, "").astype(str)
    keep = as_str.str.strip() != ""
    kept = df.loc[keep].assign(text=as_str[keep]).reset_index(drop=True)
    return kept, int((~keep).sum())


def _label_key(value: Any) -> str | None:
    """Normalise one raw label for lookup in data.labels (whose keys are strings); None = missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 from a float column (e.g. ints with gaps in parquet) means "1"
    return str(value).strip()


def _map_labels(raw: pd.Series, cfg: DataConfig, where: str) -> pd.Series:
    lookup = {str(k).strip(): v for k, v in cfg.labels.items()}
    keys = pd.Series([_label_key(v) for v in raw], index=raw.index, dtype=object)
    ids = keys.map(lambda k: lookup.get(k) if k is not None else None)
    unknown = ids.isna()
    if unknown.any():
        raise UnknownLabelsError(where, _unknown_entries(keys[unknown]), _unknown_labels_fix(keys[unknown], keys, cfg))
    return ids.astype(int)


def _yaml_key(key: str) -> str:
    # The suggested data.labels={...} must parse back to string keys: quote "0", "true", "a: b", ...
    try:
        plain = isinstance(yaml.safe_load(key), str) and key == key.strip() and not any(c in key for c in ",{}[]'\"")
    except yaml.YAMLError:
        plain = False
    return key if plain else "'" + key.replace("'", "''") + "'"


def _natural_key(key: str) -> tuple[bool, int, str]:
    # Sort "2" before "10" when suggesting ids for numeric labels.
    digits = key.removeprefix("-")
    numeric = digits.isascii() and digits.isdigit()  # str.isdigit() is also true for "¹" or "٣", int() is not
    return (not numeric, int(key) if numeric else 0, key)


class UnknownLabelsError(DataError):
    """Raw labels that ``data.labels`` does not map; ``values`` lists them (with row counts) for other advice."""

    def __init__(self, where: str, values: str, fix: str) -> None:
        self.where, self.values = where, values
        super().__init__(f"{where}: label value(s) not in data.labels: {values}; {fix}")


def _unknown_entries(bad: pd.Series) -> str:
    """``'spam?' (3 rows), missing (1 row)``: the five most common unknown values and the missing ones."""
    n_missing = int(bad.isna().sum())
    counts = bad.dropna().value_counts()
    entries = [f"{value!r} ({n} row{'s' if n != 1 else ''})" for value, n in counts.head(5).items()]
    if n_missing:
        entries.append(f"missing ({n_missing} row{'s' if n_missing != 1 else ''})")
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    return ", ".join(entries) + more


def _unknown_labels_fix(bad: pd.Series, keys: pd.Series, cfg: DataConfig) -> str:
    counts = bad.dropna().value_counts()
    lookup = {str(k).strip() for k in cfg.labels}
    found = sorted(set(keys.dropna()), key=_natural_key)
    if not lookup & set(found):
        # Nothing matches: most likely other names (or numbers) for the classes; suggest ids in order.
        suggestion = {k: str(i) for i, k in enumerate(found[:10])}
    else:
        suggestion = {str(k): str(v) for k, v in cfg.labels.items()} | {str(k): "ID" for k in counts.head(5).index}
    example = "{" + ", ".join(f"{_yaml_key(k)}: {v}" for k, v in suggestion.items()) + "}"
    tail = "; rows with a missing label must be labeled or removed" if bad.isna().any() else ""
    return f"map every raw label to a class id (0..K-1), e.g. data.labels={example}{tail}"


def is_unicode_text(text: str) -> bool:
    """False for a string holding lone surrogates: valid in Python (a JSON "\\ud800" escape decodes to one) but
    not Unicode text, and no tokenizer takes it. Readers, ``predict`` and the server refuse such texts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
