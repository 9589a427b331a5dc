"""Tests of pipeline.data: readers, cleaning, labels, balancing, splitting, download (all offline)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import urllib.error
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from pipeline.config import DataConfig
from pipeline.data import (
    DataSummary,
    clean,
    fetch_uci,
    load_splits,
    read_labeled_file,
    read_table,
    split,
    write_split_csvs,
)
from pipeline.errors import DataError

# ---------------------------------------------------------------------------------------------
# Helpers


def _cfg(path: Path | str, **kwargs) -> DataConfig:
    return DataConfig(source="file", path=str(path), **kwargs)


def _uci_file(tmp_path: Path, n_ham: int, n_spam: int, name: str = "SMSSpamCollection") -> Path:
    lines = [f"ham\thello friend number {i}" for i in range(n_ham)]
    lines += [f"spam\tWIN cash prize {i} now" for i in range(n_spam)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _csv_file(tmp_path: Path, rows: list[dict], name: str = "data.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _raises(match_words: list[str], func, *args, **kwargs) -> str:
    """Call ``func`` expecting a one-line DataError that mentions every word in ``match_words``."""
    with pytest.raises(DataError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in match_words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------------------------
# Readers


def test_uci_tsv_no_extension(tmp_path: Path) -> None:
    path = tmp_path / "SMSSpamCollection"
    path.write_text('ham\tHi there\r\n\nspam\tWIN\tnow "quoted\nham\t  NA  \n', encoding="utf-8")
    df, source = read_table(_cfg(path))
    assert source == str(path)
    assert list(df.columns) == ["text", "label"]
    # Blank line skipped, CRLF stripped, a tab inside a message kept, no quote processing, "NA" is text.
    assert df["text"].tolist() == ["Hi there", 'WIN\tnow "quoted', "  NA  "]
    assert df["label"].tolist() == ["ham", "spam", "ham"]


def test_uci_quoting_book_vs_none(tmp_path: Path) -> None:
    path = tmp_path / "sms"
    path.write_text('ham\tfine\nham\t"quoted start\nspam\tWIN cash"\nham\tlast one\n', encoding="utf-8")
    df_none, _ = read_table(_cfg(path, format="uci"))
    assert len(df_none) == 4
    # pandas' default quoting (the book's) merges the lines inside the quotes, as on the real file.
    df_book, _ = read_table(_cfg(path, format="uci", split_mode="book"))
    assert len(df_book) == 3
    assert df_book["text"][1] == "quoted start\nspam\tWIN cash"


def test_csv_custom_columns(tmp_path: Path) -> None:
    rows = [
        {"id": 1, "sms": "Hello, world", "category": "ham"},
        {"id": 2, "sms": "multi\nline", "category": "spam"},
        {"id": 3, "sms": "NA", "category": "ham"},
    ]
    path = _csv_file(tmp_path, rows)
    df, _ = read_table(_cfg(path, text_column="sms", label_column="category"))
    assert df["text"].tolist() == ["Hello, world", "multi\nline", "NA"]
    assert df["label"].tolist() == ["ham", "spam", "ham"]


def test_tsv_with_header_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "data.tab"
    path.write_bytes(b"\xef\xbb\xbftext\tlabel\nhi\tham\nwin\tspam\n")
    df, _ = read_table(_cfg(path))
    assert df.to_dict("list") == {"text": ["hi", "win"], "label": ["ham", "spam"]}


def test_jsonl_and_json_array(tmp_path: Path) -> None:
    records = [{"text": "hi", "label": 0}, {"text": "win", "label": 1}, {"text": 42, "label": 0}]
    lines = tmp_path / "data.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    array = tmp_path / "data.json"
    array.write_text(json.dumps(records), encoding="utf-8")
    for path in (lines, array):
        df = read_labeled_file(_cfg(path, labels={"0": 0, "1": 1}), str(path))
        assert df["text"].tolist() == ["hi", "win", "42"]  # a number as text becomes a string
        assert df["label"].tolist() == [0, 1, 0]


def test_parquet_numeric_labels(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    # Float labels (what an int column with gaps becomes) still match the keys "0"/"1".
    pd.DataFrame({"message": ["a", "b", "c"], "y": [0.0, 1.0, 1.0]}).to_parquet(path)
    cfg = _cfg(path, text_column="message", label_column="y", labels={"0": 0, "1": 1})
    df = read_labeled_file(cfg, str(path))
    assert df["label"].tolist() == [0, 1, 1]


def test_custom_labels_and_names(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate(["legit", "junk", "scam"] * 4)]
    path = _csv_file(tmp_path, rows)
    cfg = _cfg(path, labels={"legit": 0, "junk": 1, "scam": 1}, balance="none", split=[0.5, 0.25, 0.25])
    splits, summary = load_splits(cfg)
    assert splits["train"].features["label"].names == ["legit", "junk"]
    assert summary.class_counts_raw == {"legit": 4, "junk": 8}


def test_labels_compare_as_stripped_strings(tmp_path: Path) -> None:
    path = _csv_file(tmp_path, [{"text": "a", "label": " ham "}, {"text": "b", "label": "spam"}])
    assert read_labeled_file(_cfg(path), str(path))["label"].tolist() == [0, 1]


def test_unknown_labels_error_names_them(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate(["ham", "spam", "junk", "junk", "promo"])]
    path = _csv_file(tmp_path, rows)
    message = _raises(["'junk' (2 rows)", "'promo' (1 row)", "data.labels="], read_labeled_file, _cfg(path), str(path))
    assert "junk: ID" in message


def test_numeric_labels_suggest_quoted_keys(tmp_path: Path) -> None:
    path = _csv_file(tmp_path, [{"text": "a", "label": 0}, {"text": "b", "label": 1}])
    message = _raises(["'0' (1 row)", "'1' (1 row)"], read_labeled_file, _cfg(path), str(path))
    assert "data.labels={'0': 0, '1': 1}" in message


def test_missing_label_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": "ham"}\n{"text": "b", "label": null}\n', encoding="utf-8")
    _raises(["missing (1 row)", "data.labels="], read_labeled_file, _cfg(path), str(path))


def test_empty_texts_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"text": f"ham {i}", "label": "ham"} for i in range(5)] + [
        {"text": f"spam {i}", "label": "spam"} for i in range(5)
    ]
    rows += [{"text": None, "label": "ham"}, {"text": "   \t", "label": "spam"}, {"text": "", "label": "ham"}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    _, summary = load_splits(_cfg(path, split=[0.4, 0.3, 0.3]))
    assert summary.rows_read == 13
    assert summary.dropped_empty == 3
    assert summary.class_counts_raw == {"ham": 5, "spam": 5}


def test_dedupe(tmp_path: Path) -> None:
    path = _uci_file(tmp_path, 10, 6)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("ham\thello friend number 0\nspam\thello friend number 1\n")  # the 2nd: conflicting label
    _, kept = load_splits(_cfg(path, balance="none", split=[0.5, 0.25, 0.25]))
    assert kept.dropped_duplicates == 0
    assert kept.class_counts_raw == {"ham": 11, "spam": 7}
    _, deduped = load_splits(_cfg(path, dedupe=True, balance="none", split=[0.5, 0.25, 0.25]))
    assert deduped.dropped_duplicates == 2
    assert deduped.class_counts_raw == {"ham": 10, "spam": 6}  # the first occurrence wins
    assert deduped.test_in_train == 0


# ---------------------------------------------------------------------------------------------
# Balancing and splitting


def test_undersample_two_classes_is_the_books_way(tmp_path: Path) -> None:
    path = _uci_file(tmp_path, 100, 30)
    splits, summary = load_splits(_cfg(path, split_mode="book"))
    assert summary.rows_after_balance == 60
    counts = {name: sum(c[name] for c in summary.split_class_counts.values()) for name in ("ham", "spam")}
    assert counts == {"ham": 30, "spam": 30}
    # Reproduce the book's code on the same rows: identical texts in identical order.
    df = pd.read_csv(path, sep="\t", header=None, names=["Label", "Text"])
    ham = df[df["Label"] == "ham"].sample(30, random_state=123)
    balanced = pd.concat([ham, df[df["Label"] == "spam"]]).sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(balanced) * 0.7)
    val_end = train_end + int(len(balanced) * 0.1)
    assert list(splits["train"]["text"]) == balanced["Text"][:train_end].tolist()
    assert list(splits["validation"]["text"]) == balanced["Text"][train_end:val_end].tolist()
    assert list(splits["test"]["text"]) == balanced["Text"][val_end:].tolist()
    assert summary.split_sizes == {"train": 42, "validation": 6, "test": 12}


def test_undersample_three_classes(tmp_path: Path) -> None:
    rows = [{"text": f"{lab} {i}", "label": lab} for lab, n in (("a", 30), ("b", 10), ("c", 20)) for i in range(n)]
    path = _csv_file(tmp_path, rows)
    _, summary = load_splits(_cfg(path, labels={"a": 0, "b": 1, "c": 2}, split=[0.4, 0.3, 0.3]))
    assert summary.class_counts_raw == {"a": 30, "b": 10, "c": 20}
    assert summary.rows_after_balance == 30
    totals = {k: sum(c[k] for c in summary.split_class_counts.values()) for k in ("a", "b", "c")}
    assert totals == {"a": 10, "b": 10, "c": 10}


def test_class_weights(tmp_path: Path) -> None:
    path = _uci_file(tmp_path, 60, 20)
    _, summary = load_splits(_cfg(path, balance="class_weights"))
    assert summary.rows_after_balance == 80
    train = summary.split_class_counts["train"]
    weights = summary.class_weights
    assert weights is not None
    assert len(weights) == 2
    assert np.mean(weights) == pytest.approx(1.0)
    assert weights[1] / weights[0] == pytest.approx(train["ham"] / train["spam"])
    assert load_splits(_cfg(path))[1].class_weights is None


def test_stratified_split_fractions_and_determinism(tmp_path: Path) -> None:
    path = _uci_file(tmp_path, 300, 100)
    cfg = _cfg(path, balance="none", split=[0.6, 0.2, 0.2])
    splits, summary = load_splits(cfg)
    assert summary.split_sizes == {"train": 240, "validation": 80, "test": 80}
    for name in ("train", "validation", "test"):
        counts = summary.split_class_counts[name]
        assert counts["spam"] / summary.split_sizes[name] == pytest.approx(0.25, abs=0.02)
    assert set(splits["train"]["text"]).isdisjoint(splits["test"]["text"])
    assert set(splits["validation"]["text"]).isdisjoint(splits["test"]["text"])
    again, _ = load_splits(cfg)
    other, _ = load_splits(_cfg(path, balance="none", split=[0.6, 0.2, 0.2], seed=7))
    for name in ("train", "validation", "test"):
        assert list(again[name]["text"]) == list(splits[name]["text"])
    assert list(other["test"]["text"]) != list(splits["test"]["text"])


def test_output_features(tmp_path: Path) -> None:
    splits, summary = load_splits(_cfg(_uci_file(tmp_path, 20, 20)))
    assert list(splits) == ["train", "validation", "test"]
    for ds in splits.values():
        assert ds.features["text"] == datasets.Value("string")
        assert ds.features["label"] == datasets.ClassLabel(names=["ham", "spam"])
    assert isinstance(summary, DataSummary)
    assert json.loads(json.dumps(summary.to_dict()))["split_sizes"] == summary.split_sizes


def test_split_missing_a_class_is_an_error(tmp_path: Path) -> None:
    # Book split of 10 rows with 10% validation: one validation row, so one class is absent there.
    path = _uci_file(tmp_path, 5, 5)
    _raises(
        ["too few rows", "validation split has no", "data.split"],
        load_splits,
        _cfg(path, split_mode="book", split=[0.8, 0.1, 0.1]),
    )
    # Stratified: too few rows for every class in every split.
    _raises(["too few rows", "data.split"], load_splits, _cfg(path, split=[0.8, 0.1, 0.1]))


def test_too_few_rows_per_class(tmp_path: Path) -> None:
    _raises(["too few rows", "'spam' has 2"], load_splits, _cfg(_uci_file(tmp_path, 20, 2)))
    only_ham = _uci_file(tmp_path, 20, 0, name="ham_only")
    _raises(["'spam' has 0"], load_splits, _cfg(only_ham))


# ---------------------------------------------------------------------------------------------
# Bad input


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _raises(["does not exist", "nope.csv"], read_table, _cfg(tmp_path / "nope.csv"))
    _raises(["is a directory", "data.path"], read_table, _cfg(tmp_path, format="csv"))


def test_empty_files(tmp_path: Path) -> None:
    for name in ("empty.csv", "empty.parquet", "SMSSpamCollection"):
        (tmp_path / name).write_bytes(b"")
        _raises(["empty", "0 bytes"], read_table, _cfg(tmp_path / name))
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n", encoding="utf-8")
    _raises(["no data rows"], read_table, _cfg(header_only))
    blank = tmp_path / "blank"
    blank.write_text("\n\n  \n", encoding="utf-8")
    _raises(["no data rows"], read_table, _cfg(blank))
    blank_csv = tmp_path / "blank.csv"
    blank_csv.write_text("\n\n", encoding="utf-8")
    _raises(["no data rows"], read_table, _cfg(blank_csv))
    all_empty = tmp_path / "commas.csv"  # a CSV read as the UCI TSV: no tabs, so no texts
    all_empty.write_text("text,label\nhi,ham\n", encoding="utf-8")
    _raises(
        ["no line of 'label<TAB>text'", "data.format=auto", "data.format=csv"],
        load_splits,
        _cfg(all_empty, format="uci"),
    )


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nok,ham\ncaf\u00e9,spam\n".encode("latin-1"))
    _raises(["not valid UTF-8", "0xe9", "offset 21", "line 3", "re-encode"], read_table, _cfg(path))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # offsets count the BOM too
    _raises(["offset 24", "line 3"], read_table, _cfg(path))


def test_missing_columns(tmp_path: Path) -> None:
    path = _csv_file(tmp_path, [{"message": "hi", "label": "ham"}])
    _raises(["no column 'text'", "'message', 'label'", "data.text_column=message"], read_table, _cfg(path))
    renamed = _csv_file(tmp_path, [{"text": "hi", "v1": "ham", "extra": 1}], name="renamed.csv")
    _raises(["no column 'label'", "data.label_column=v1"], read_table, _cfg(renamed))


def test_unreadable_formats(tmp_path: Path) -> None:
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_text("not parquet at all", encoding="utf-8")
    _raises(["not a readable parquet file"], read_table, _cfg(bad_parquet))
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "a", "label": "ham"}\n{"text": oops}\n', encoding="utf-8")
    _raises(["line 2 is not valid JSON"], read_table, _cfg(bad_json))
    not_objects = tmp_path / "list.jsonl"
    not_objects.write_text("[1, 2]\n", encoding="utf-8")
    _raises(["item 1", "not a JSON object"], read_table, _cfg(not_objects))
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text('text,label\n"unterminated,ham\n', encoding="utf-8")
    _raises(["not a valid CSV file", "data.format="], read_table, _cfg(bad_csv))
    _raises(["extension '.txt'", "data.format="], read_table, _cfg(tmp_path / "data.txt"))


# ---------------------------------------------------------------------------------------------
# Hub (datasets.load_dataset faked: tests never touch the network)


def test_hub_classlabel_names(monkeypatch: pytest.MonkeyPatch) -> None:
    features = datasets.Features({"sms": datasets.Value("string"), "label": datasets.ClassLabel(names=["ham", "spam"])})
    fake = datasets.Dataset.from_dict({"sms": ["hi", "win"], "label": [0, 1]}, features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: fake)
    df, source = read_table(DataConfig(source="hub", hub_name="someone/sms", text_column="sms"))
    assert source == "hub:someone/sms"
    assert df.to_dict("list") == {"text": ["hi", "win"], "label": ["ham", "spam"]}


def test_hub_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str, split: str) -> None:
        raise ConnectionError("offline\nreally")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    _raises(
        ["someone/sms", "ConnectionError", "data.source=file"],
        read_table,
        DataConfig(source="hub", hub_name="someone/sms"),
    )


# ---------------------------------------------------------------------------------------------
# Download (fake urlopen serving an in-memory zip)

FAKE_FILE = b"ham\thello there\nspam\tWIN a prize now\nham\tsee you\nspam\tcall now\nham\tok\nspam\tfree\n"


def _zip(content: bytes, member: str = "SMSSpamCollection") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(member, content)
        archive.writestr("readme", "the SMS Spam Collection")
    return buf.getvalue()


class _Response(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


class _Opener:
    """Serves ``routes[url]`` (bytes) or raises it (an exception); records every call."""

    def __init__(self, routes: dict[str, bytes | Exception]) -> None:
        self.routes = routes
        self.calls: list[str] = []

    def __call__(self, url: str, timeout: float) -> _Response:
        self.calls.append(url)
        result = self.routes[url]
        if isinstance(result, Exception):
            raise result
        return _Response(result)


def _fetch_cfg(tmp_path: Path, content: bytes = FAKE_FILE) -> DataConfig:
    return DataConfig(
        cache_dir=str(tmp_path / "cache"),
        url="https://primary.invalid/sms.zip",
        mirror_url="https://mirror.invalid/sms.zip",
        sha256=hashlib.sha256(content).hexdigest(),
    )


def test_fetch_uci_downloads_and_caches(tmp_path: Path) -> None:
    cfg = _fetch_cfg(tmp_path)
    opener = _Opener({cfg.url: _zip(FAKE_FILE)})
    path = fetch_uci(cfg, urlopen=opener)  # progress bar on: exercises tqdm on stderr
    assert path == tmp_path / "cache" / "SMSSpamCollection"
    assert path.read_bytes() == FAKE_FILE
    assert opener.calls == [cfg.url]
    assert fetch_uci(cfg, progress=False, urlopen=opener) == path
    assert opener.calls == [cfg.url]  # cache hit: no second download
    assert sorted(p.name for p in path.parent.iterdir()) == ["SMSSpamCollection"]


def test_fetch_uci_falls_back_to_mirror(tmp_path: Path) -> None:
    cfg = _fetch_cfg(tmp_path)
    opener = _Opener({cfg.url: urllib.error.URLError("name resolution failed"), cfg.mirror_url: _zip(FAKE_FILE)})
    # attempts=1: retries of one URL are tested in tests/reliability/test_download.py
    assert fetch_uci(cfg, progress=False, urlopen=opener, attempts=1).read_bytes() == FAKE_FILE
    assert opener.calls == [cfg.url, cfg.mirror_url]


def test_fetch_uci_both_fail(tmp_path: Path) -> None:
    cfg = _fetch_cfg(tmp_path)
    opener = _Opener({cfg.url: TimeoutError("timed out"), cfg.mirror_url: _zip(FAKE_FILE, member="other")})
    _raises(
        [cfg.url, cfg.mirror_url, "data.source=file data.path=FILE"],
        fetch_uci,
        cfg,
        progress=False,
        urlopen=opener,
        attempts=1,
    )
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_fetch_uci_checksum_mismatch(tmp_path: Path) -> None:
    cfg = _fetch_cfg(tmp_path, content=b"something else")
    opener = _Opener({cfg.url: _zip(FAKE_FILE), cfg.mirror_url: b"not a zip"})
    _raises(["sha256", "data.sha256", "data.path=FILE"], fetch_uci, cfg, progress=False, urlopen=opener)
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_fetch_uci_replaces_corrupt_cache(tmp_path: Path) -> None:
    cfg = _fetch_cfg(tmp_path)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "SMSSpamCollection").write_bytes(b"truncated")
    opener = _Opener({cfg.url: _zip(FAKE_FILE)})
    assert fetch_uci(cfg, progress=False, urlopen=opener).read_bytes() == FAKE_FILE
    assert opener.calls == [cfg.url]


def test_read_table_uci_uses_cache(tmp_path: Path) -> None:
    cfg = _fetch_cfg(tmp_path)
    fetch_uci(cfg, progress=False, urlopen=_Opener({cfg.url: _zip(FAKE_FILE)}))
    df, source = read_table(cfg)  # cached and verified: no network needed
    assert source == f"uci:{tmp_path / 'cache' / 'SMSSpamCollection'}"
    assert len(df) == 6
    assert df["label"].tolist()[:2] == ["ham", "spam"]


# ---------------------------------------------------------------------------------------------
# Writing and reading back


def test_write_split_csvs_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sms"
    lines = [f'ham\tmsg {i}, with "quotes" and comma' for i in range(12)] + [f"spam\tWIN {i}" for i in range(8)]
    path.write_text("\n".join(lines), encoding="utf-8")
    cfg = _cfg(path)
    splits, _ = load_splits(cfg)
    paths = write_split_csvs(splits, tmp_path / "out")
    assert set(paths) == {"train", "validation", "test"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test.csv", "train.csv", "validation.csv"]
    for name, csv_path in paths.items():
        with csv_path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == ["text", "label", "label_id"]
        assert [r["label"] for r in rows] == splits[name].features["label"].int2str(list(splits[name]["label"]))
        back = read_labeled_file(cfg, str(csv_path))
        assert back["text"].tolist() == list(splits[name]["text"])
        assert back["label"].tolist() == list(splits[name]["label"])


def test_read_labeled_file_format_fallback(tmp_path: Path) -> None:
    # An unknown extension falls back to data.format; a known one wins over it.
    path = tmp_path / "eval.txt"
    path.write_text("ham\thi\nspam\twin\n", encoding="utf-8")
    assert read_labeled_file(_cfg(tmp_path / "x", format="uci"), str(path))["label"].tolist() == [0, 1]
    csv_path = _csv_file(tmp_path, [{"text": "a", "label": "spam"}])
    assert read_labeled_file(_cfg(tmp_path / "x", format="uci"), str(csv_path))["label"].tolist() == [1]


def test_module_logger_names() -> None:
    assert split.logger.name == "pipeline.data.split" and clean.logger.name == "pipeline.data.clean"


# ---------------------------------------------------------------------------------------------
# The real UCI file (skipped when ../shared/data is absent)


def test_real_data_book_mode(real_data_path: Path) -> None:
    splits, summary = load_splits(_cfg(real_data_path, format="uci", split_mode="book"))
    assert summary.rows_read == 5572
    assert summary.dropped_empty == 0
    assert summary.class_counts_raw == {"ham": 4825, "spam": 747}
    assert summary.rows_after_balance == 1494
    assert summary.split_sizes == {"train": 1045, "validation": 149, "test": 300}
    assert summary.split_class_counts == {
        "train": {"ham": 528, "spam": 517},
        "validation": {"ham": 70, "spam": 79},
        "test": {"ham": 149, "spam": 151},
    }
    assert summary.test_in_train == 37
    assert {len(splits[s]) for s in ("train", "validation", "test")} == {1045, 149, 300}


def test_real_data_stratified(real_data_path: Path) -> None:
    _, summary = load_splits(_cfg(real_data_path, format="uci"))
    assert summary.rows_read == 5574
    assert summary.class_counts_raw == {"ham": 4827, "spam": 747}
    sizes = summary.split_sizes
    assert sum(sizes.values()) == summary.rows_after_balance == 1494
    for name, fraction in zip(("train", "validation", "test"), (0.7, 0.1, 0.2), strict=True):
        assert abs(sizes[name] - 1494 * fraction) <= 1
        counts = summary.split_class_counts[name]
        assert abs(counts["ham"] - counts["spam"]) <= 1


def test_read_labeled_file_format_override(tmp_path: Path) -> None:
    # A UCI-style file (no header) named *.tsv: the extension says "TSV with a header", fmt says otherwise.
    path = tmp_path / "toy.tsv"
    path.write_text("ham\thello there\nspam\tWIN a prize now\n", encoding="utf-8")
    frame = read_labeled_file(DataConfig(), str(path), "uci")
    assert frame["text"].tolist() == ["hello there", "WIN a prize now"] and frame["label"].tolist() == [0, 1]
