"""Multi-label data: label lists, separated strings and 0/1 columns become multi-hot rows, split on label sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.data.multilabel import iterative_split
from pipeline.data.split import load_splits, write_split_csvs
from pipeline.errors import ConfigError, DataError
from tests.multilabel_data import (
    LABELS,
    write_flag_columns_csv,
    write_multilabel_csv,
    write_multilabel_jsonl,
)

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "multilabel_smoke.yaml"


def data_config(path: Path, *overrides: str):
    return load_config(CONFIG, [f"data.path={path}", *overrides]).data


@pytest.mark.parametrize("writer", [write_multilabel_jsonl, write_multilabel_csv], ids=["jsonl", "csv"])
def test_label_lists_and_separated_strings_give_the_same_splits(tmp_path: Path, writer):
    suffix = ".jsonl" if writer is write_multilabel_jsonl else ".csv"
    splits, summary = load_splits(data_config(writer(tmp_path / f"toy{suffix}")))
    assert summary.split_sizes == {"train": 84, "validation": 12, "test": 24}
    assert summary.class_counts_raw == {"toxic": 60, "insult": 60, "threat": 60}
    # Stratified on the label sets: every label keeps its half share in every split, to within a row.
    for split, counts in summary.split_class_counts.items():
        assert all(abs(n - summary.split_sizes[split] / 2) <= 1 for n in counts.values()), (split, counts)
    assert len(splits["train"][0]["label"]) == 3
    assert summary.class_weights is None


def test_flag_columns_name_the_labels(tmp_path: Path):
    path = write_flag_columns_csv(tmp_path / "flags.csv")
    cfg = load_config(CONFIG, [f"data.path={path}", "data.label_columns=[toxic,insult,threat]"]).data
    assert cfg.id2label == dict(enumerate(LABELS))
    splits, summary = load_splits(cfg)
    assert summary.class_counts_raw == {"toxic": 60, "insult": 60, "threat": 60}
    rows = pd.read_csv(path)
    first = splits["train"][0]
    source = rows[rows["text"] == first["text"]].iloc[0]
    assert first["label"] == [float(source[name]) for name in LABELS]


def test_class_weights_are_per_label_positive_weights(tmp_path: Path):
    path = write_multilabel_jsonl(tmp_path / "toy.jsonl")
    _, summary = load_splits(data_config(path, "data.balance=class_weights"))
    train = summary.split_class_counts["train"]
    rows = summary.split_sizes["train"]
    assert summary.class_weights == pytest.approx([(rows - train[n]) / train[n] for n in LABELS])


def test_split_csvs_read_back_as_the_same_label_sets(tmp_path: Path):
    cfg = data_config(write_multilabel_jsonl(tmp_path / "toy.jsonl"))
    splits, _ = load_splits(cfg)
    paths = write_split_csvs(splits, tmp_path / "out", cfg)
    again, _ = load_splits(data_config(paths["test"], "data.label_column=label", "data.split=[0.6,0.2,0.2]"))
    written = {r["text"]: r["label"] for r in splits["test"]}
    assert {r["text"]: r["label"] for name in again for r in again[name]} == written


def test_iterative_split_is_seeded_and_covers_every_row():
    rng = np.random.default_rng(1)
    labels = (rng.random((200, 5)) < [0.5, 0.2, 0.1, 0.05, 0.03]).astype(float)
    first = iterative_split(labels, [0.7, 0.1, 0.2], seed=3)
    assert np.array_equal(np.sort(np.concatenate(list(first.values()))), np.arange(200))
    assert all(np.array_equal(first[k], v) for k, v in iterative_split(labels, [0.7, 0.1, 0.2], seed=3).items())
    # Every label's rows are shared out as the fractions say, to within one row (also the 5-row label).
    for fraction, index in zip([0.7, 0.1, 0.2], first.values(), strict=True):
        assert np.all(np.abs(labels[index].sum(axis=0) - fraction * labels.sum(axis=0)) <= 1)


def write_rows(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return path


def test_unknown_label_is_named_with_the_fix(tmp_path: Path):
    path = write_multilabel_jsonl(tmp_path / "toy.jsonl")
    with path.open("a", encoding="utf-8") as f:
        f.write('{"text": "you spammer", "labels": ["toxic", "spammy"]}\n')
    with pytest.raises(DataError, match=r"label\(s\) not in data.labels: 'spammy' \(1 row\); add every label") as err:
        load_splits(data_config(path))
    assert "\n" not in str(err.value)


def test_a_non_flag_value_in_a_label_column_is_named(tmp_path: Path):
    path = write_flag_columns_csv(tmp_path / "flags.csv")
    frame = pd.read_csv(path)
    frame.loc[4, "insult"] = 2
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'insult' holds '2' in data row 5, but data.label_columns need 0 or 1"):
        load_splits(data_config(path, "data.label_columns=[toxic,insult,threat]"))


def test_missing_label_columns_are_named(tmp_path: Path):
    path = write_flag_columns_csv(tmp_path / "flags.csv")
    with pytest.raises(DataError, match=r"has no column\(s\) 'severe'.*set data.text_column and data.label_columns"):
        load_splits(data_config(path, "data.label_columns=[toxic,severe]", "data.labels={toxic: 0, severe: 1}"))


def test_a_label_never_in_train_is_an_error(tmp_path: Path):
    path = write_multilabel_jsonl(tmp_path / "toy.jsonl")
    with pytest.raises(DataError, match=r"label 'unused' is on 0 row\(s\).*drop it from data.labels"):
        load_splits(data_config(path, "data.labels={toxic: 0, insult: 1, threat: 2, unused: 3}"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.balance=undersample"], "cannot undersample or book-split label sets"),
        (["data.label_columns=[a]"], "two or more different header columns"),
        (["data.label_columns=[a,b]", "data.labels={x: 0, y: 1}"], "does not match data.label_columns"),
        (["data.problem_type=single_label_classification", "data.label_columns=[a,b]"], "needs data.problem_type"),
    ],
)
def test_multi_label_config_errors(tmp_path: Path, overrides: list[str], message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG, overrides)
