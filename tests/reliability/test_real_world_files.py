"""Files and folders as users have them: other encodings, BOMs, CRLF, no header row, a model dir that is not there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForSequenceClassification

from pipeline.cli import main
from pipeline.config import DataConfig, ModelConfig, load_config
from pipeline.data.readers import read_labeled_file
from pipeline.data.tokenize import bundled_gpt2_tokenizer, load_tokenizer
from pipeline.errors import ConfigError, DataError, ModelError
from pipeline.model.load import load_model
from tests.conftest import TINY_GPT2, toy_rows
from tests.reliability.conftest import SMOKE

ROWS = [("ham", "Café at 6? Bring £5"), ("spam", "WIN €1000 now, reply YES"), ("ham", 'he said "ok", fine')]


def file_cfg(path: Path, **values: object) -> DataConfig:
    return DataConfig(source="file", path=str(path), **values)


def csv_text(rows: list[tuple[str, str]], *, header: bool = True, newline: str = "\n") -> str:
    lines = ["label,text"] if header else []
    lines += [f'{label},"{text.replace(chr(34), chr(34) * 2)}"' for label, text in rows]
    return newline.join(lines) + newline


def test_latin1_file_fails_with_a_hint_and_reads_with_data_encoding(tmp_path: Path):
    path = tmp_path / "sms.csv"
    path.write_bytes(csv_text([*ROWS[:2], ("ham", "plain")]).encode("latin-1", errors="replace"))
    with pytest.raises(DataError) as caught:
        read_labeled_file(file_cfg(path), str(path))
    message = str(caught.value)
    assert "is not valid UTF-8" in message and "line 2" in message and "set data.encoding=latin-1" in message
    df = read_labeled_file(file_cfg(path, encoding="latin-1"), str(path))
    assert df["text"].tolist()[0] == "Café at 6? Bring £5"


@pytest.mark.parametrize(
    ("encoding", "bom", "newline"),
    [("utf-8", b"\xef\xbb\xbf", "\r\n"), ("utf-16", b"", "\r\n"), ("cp1252", b"", "\n")],
    ids=["utf8-bom-crlf", "utf16", "cp1252"],
)
def test_encodings_boms_and_line_endings_read_the_same_rows(tmp_path: Path, encoding: str, bom: bytes, newline: str):
    path = tmp_path / "sms.csv"
    path.write_bytes(bom + csv_text(ROWS, newline=newline).encode(encoding))
    cfg = file_cfg(path) if encoding == "utf-8" else file_cfg(path, encoding=encoding)
    df = read_labeled_file(cfg, str(path))
    assert list(zip(df["text"], df["label"], strict=True)) == [(t, 0 if lab == "ham" else 1) for lab, t in ROWS]


def test_headerless_csv_and_tsv_by_column_position(tmp_path: Path):
    csv = tmp_path / "sms.csv"
    csv.write_text(csv_text(ROWS, header=False), encoding="utf-8")
    df = read_labeled_file(file_cfg(csv, header=False, text_column=1, label_column=0), str(csv))
    assert df["text"].tolist() == [text for _, text in ROWS]  # the first row is data, not a header
    tsv = tmp_path / "sms.tsv"
    tsv.write_text("".join(f"id{i}\t{text}\t{label}\n" for i, (label, text) in enumerate(ROWS)), encoding="utf-8")
    df = read_labeled_file(file_cfg(tsv, header=False, text_column=1, label_column=2), str(tsv))
    assert df["label"].tolist() == [0, 1, 0]
    with pytest.raises(DataError, match=r"has 3 column\(s\) \(positions 0..2\) but data.text_column=5"):
        read_labeled_file(file_cfg(tsv, header=False, text_column=5, label_column=2), str(tsv))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["data.header=false"], "needs data.text_column and data.label_column as column positions"),
        (["data.text_column=1", "data.label_column=0"], "is a column position, which needs data.header=false"),
        (["data.header=false", "data.text_column=1", "data.label_column=1"], "both column 1"),
        (["data.header=false", "data.text_column=-1", "data.label_column=0"], "column positions"),
        (["data.header=false", "data.format=jsonl", "data.text_column=1", "data.label_column=0"], "CSV/TSV"),
        (["data.encoding=klingon"], "data.encoding='klingon' is not a text encoding"),
        (["data.encoding=base64"], "is not a text encoding"),
    ],
)
def test_bad_header_and_encoding_settings_are_config_errors(overrides: list[str], fragment: str):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides)


def test_prepare_a_headerless_latin1_csv_through_the_cli(tmp_path: Path, capsys):
    path = tmp_path / "export.csv"
    rows = [(label, text.replace("lunch", "déjeuner")) for label, text in toy_rows(20)]
    path.write_bytes(csv_text(rows, header=False, newline="\r\n").encode("latin-1"))
    base = ["--config", SMOKE, "data.source=file", f"data.path={path}", "data.format=csv"]
    assert main(["prepare", *base, "--out", str(tmp_path / "no")]) == 2
    assert "data.encoding=latin-1" in capsys.readouterr().err
    columns = ["data.header=false", "data.text_column=1", "data.label_column=0", "data.encoding=latin-1"]
    assert main(["prepare", *base, *columns, "--out", str(tmp_path / "splits")]) == 0
    summary = json.loads((tmp_path / "splits" / "summary.json").read_text())
    assert sum(summary["split_sizes"].values()) == 40
    assert "déjeuner" in (tmp_path / "splits" / "train.csv").read_text(encoding="utf-8")


def test_a_missing_local_model_dir_is_named_as_such(tmp_path: Path, toy_data_file: Path, capsys):
    for key in ("model.name_or_path", "model.tokenizer"):
        args = ["train", "--config", SMOKE, "model.from_config=null", f"{key}=./no/such/dir"]
        args += ["data.source=file", f"data.path={toy_data_file}", "data.format=uci", f"output.dir={tmp_path / 'run'}"]
        if key == "model.tokenizer":
            args.append("model.name_or_path=openai-community/gpt2")
        assert main(args) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("error: model dir ./no/such/dir does not exist") and key in last, last
    assert not (tmp_path / "run").exists()
    with pytest.raises(ModelError, match="model dir ~/no/such/model does not exist"):
        load_model(ModelConfig(name_or_path="~/no/such/model"), {0: "ham", 1: "spam"}, 0, cache_dir=tmp_path)


def test_a_dir_saved_with_save_pretrained_works_offline_as_the_readme_shows(tmp_path: Path, monkeypatch):
    # README "Offline use": any dir written by save_pretrained (model and tokenizer) is a model.name_or_path.
    saved = tmp_path / "models" / "gpt2"
    config = AutoConfig.for_model(**TINY_GPT2, num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(saved)
    bundled_gpt2_tokenizer().save_pretrained(saved)
    monkeypatch.chdir(tmp_path)
    cfg = ModelConfig(name_or_path="./models/gpt2")
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, {0: "ham", 1: "spam"}, tokenizer.pad_token_id, cache_dir=tmp_path / "cache")
    assert tokenizer("hello")["input_ids"] == [31373] and model.config.num_labels == 2
