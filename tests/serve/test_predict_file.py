"""``spam-tune predict MODEL --file IN --out OUT``: every input and output format round-trips in row order,
chunk by chunk; bad files get one-line errors; nothing half-written is ever left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.serve.files import PredictFileError, TableReader
from pipeline.serve.predict_file import FileJob, predict_file
from tests.serve.conftest import HAM_TEXT, SPAM_TEXT

ROWS = [
    {"id": "007", "text": SPAM_TEXT, "lang": "en"},
    {"id": "008", "text": 'she said "hi, see you at 6", ok?', "lang": "en"},
    {"id": "009", "text": "WINNER! claim your FREE prize now, call 80999", "lang": "en"},
    {"id": "010", "text": "line one\nline two of one message", "lang": "en"},
    {"id": "011", "text": HAM_TEXT, "lang": "en"},
    {"id": "012", "text": "Grüße aus Köln 🙂, bis später", "lang": "de"},
    {"id": "013", "text": "FREE entry to win a brand new phone, reply YES to 80444", "lang": "en"},
]
TEXT_LINES = [SPAM_TEXT, HAM_TEXT, "call me later", "WINNER! claim your FREE prize now, call 80999", "ok"]


def write_input(path: Path, rows: list[dict[str, str]]) -> Path:
    frame = pd.DataFrame(rows)
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.assign(text=frame["text"].str.replace("\n", " ")).to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    return path


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[""])
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype={"id": str})
    return pd.read_parquet(path)


def expected_labels(classifier: Any, texts: list[str]) -> list[str]:
    return [p.label for p in classifier.predict(texts)]


def check_predictions(out: pd.DataFrame, texts: list[str], classifier: Any) -> None:
    assert list(out.columns[-4:]) == ["label", "score", "p_ham", "p_spam"]
    assert out["label"].tolist() == expected_labels(classifier, texts)
    assert (out["p_ham"] + out["p_spam"]).round(6).eq(1).all()
    chosen = [row[f"p_{row['label']}"] for _, row in out.iterrows()]
    assert out["score"].tolist() == pytest.approx(chosen)
    expected = classifier.probabilities(texts).numpy()[:, 1]
    assert out["p_spam"].tolist() == pytest.approx(expected.tolist(), abs=1e-6)


@pytest.mark.parametrize("out_suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("in_suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_tables_round_trip_in_row_order(tmp_path: Path, full_classifier: Any, in_suffix: str, out_suffix: str):
    source = write_input(tmp_path / f"in{in_suffix}", ROWS)
    out = tmp_path / f"out{out_suffix}"
    # 3 rows per chunk: 7 rows span three chunks, each sorted by length inside and put back in order.
    assert predict_file(full_classifier, FileJob(source, out, chunk_size=3), progress=False) == len(ROWS)
    table = read_output(out)
    assert list(table.columns) == ["id", "text", "lang", "label", "score", "p_ham", "p_spam"]
    assert table["id"].tolist() == [r["id"] for r in ROWS]  # order kept, leading zeros kept
    texts = table["text"].tolist()
    sent = [r["text"].replace("\n", " ") if in_suffix == ".tsv" else r["text"] for r in ROWS]
    assert texts == sent
    check_predictions(table, sent, full_classifier)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@pytest.mark.parametrize("out_suffix", [".csv", ".jsonl", ".parquet"])
def test_plain_text_round_trips_line_by_line(tmp_path: Path, full_classifier: Any, out_suffix: str):
    source = tmp_path / "messages.txt"
    source.write_text("\ufeff" + "\r\n".join(TEXT_LINES) + "\r\n", encoding="utf-8")  # BOM + CRLF, as Windows writes
    out = tmp_path / f"out{out_suffix}"
    assert predict_file(full_classifier, FileJob(source, out, chunk_size=2), progress=False) == len(TEXT_LINES)
    table = read_output(out)
    assert table["text"].tolist() == TEXT_LINES
    check_predictions(table, TEXT_LINES, full_classifier)


def test_blank_lines_are_refused_with_their_numbers_or_kept_in_place(tmp_path: Path, full_classifier: Any):
    source = tmp_path / "messages.txt"
    source.write_text(f"{SPAM_TEXT}\n\n{HAM_TEXT}\n   \n", encoding="utf-8")  # 4 lines, 2 of them blank
    out = tmp_path / "out.csv"
    with pytest.raises(PredictFileError, match=r"empty or missing text in line\(s\) 2, 4 .*--allow-empty"):
        predict_file(full_classifier, FileJob(source, out), progress=False)
    assert not out.exists()
    assert predict_file(full_classifier, FileJob(source, out, allow_empty=True), progress=False) == 4
    table = pd.read_csv(out, keep_default_na=False)
    assert table["label"].tolist() == ["spam", "", "ham", ""]  # 4 lines in, 4 rows out, aligned
    assert table["score"].tolist()[1] == "" and table["text"].tolist()[3] == "   "


def test_empty_cells_and_missing_json_keys_name_their_rows(tmp_path: Path, full_classifier: Any):
    table = tmp_path / "in.csv"
    table.write_text(f"text,id\n{SPAM_TEXT},1\n,2\n{HAM_TEXT},3\n", encoding="utf-8")
    with pytest.raises(PredictFileError, match=r"row\(s\) 2 \(data rows counted from 1 after the header\)"):
        predict_file(full_classifier, FileJob(table, tmp_path / "o.csv"), progress=False)
    lines = tmp_path / "in.jsonl"
    lines.write_text(f'{{"text": "{HAM_TEXT}"}}\n\n{{"id": 5}}\n{{"text": null}}\n', encoding="utf-8")
    with pytest.raises(PredictFileError, match=r"line\(s\) 3, 4 "):
        predict_file(full_classifier, FileJob(lines, tmp_path / "o.jsonl"), progress=False)
    out = tmp_path / "kept.jsonl"
    predict_file(full_classifier, FileJob(lines, out, allow_empty=True), progress=False)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in rows] == ["ham", None, None] and rows[1]["p_spam"] is None


@pytest.mark.parametrize(
    ("name", "content", "job", "words"),
    [
        (
            "in.csv",
            b"message,id\nhello,1\n",
            {},
            "has no column 'text' (columns found: 'message', 'id'); pass --text-column message",
        ),
        ("in.csv", b"text\n", {}, "has no data rows"),
        ("in.csv", b"", {}, "is empty (0 bytes)"),
        ("in.txt", b"hello\ncaf\xe9 au lait\n", {}, "line 2 is not valid UTF-8 (byte 0xe9)"),
        ("in.csv", b"text\nok\n" + b"caf\xe9\n" * 3, {}, "is not valid UTF-8"),
        ("in.jsonl", b'{"text": "a"}\n{"text": oops}\n', {}, "line 2 is not valid JSON"),
        ("in.jsonl", b'[{"text": "a"}]\n', {}, "holds a JSON array"),
        ("in.jsonl", b'{"text": "a"}\n[1, 2]\n', {}, "line 2 is a list, not a JSON object"),
        ("in.parquet", b"not parquet at all", {}, "is not a readable parquet file"),
        ("in.xlsx", b"x", {}, "cannot tell the format"),
        ("in.txt", b"hello\n", {"text_column": "body"}, "has no columns; drop --text-column"),
        ("in.txt", b"hello\n", {"out": "out.xlsx"}, "is not one of .csv, .jsonl, .parquet"),
        ("in.txt", b"hello\n", {"out": "in.txt"}, "is the input file"),
        ("in.txt", b"hello\n", {"chunk_size": 0}, "--chunk-size must be at least 1"),
    ],
)
def test_bad_files_get_one_line_errors(
    tmp_path: Path, full_classifier: Any, name: str, content: bytes, job: dict[str, Any], words: str
):
    source = tmp_path / name
    source.write_bytes(content)
    out = tmp_path / job.pop("out", "out.csv")
    with pytest.raises(PredictFileError) as caught:
        predict_file(full_classifier, FileJob(source, out, **job), progress=False)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    if out != source:
        assert not out.exists()


def test_a_failure_in_a_later_chunk_leaves_no_output_and_keeps_an_old_one(tmp_path: Path, full_classifier: Any):
    source = tmp_path / "in.txt"
    source.write_text("\n".join([SPAM_TEXT] * 5 + [""]) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    out.write_text("previous results\n", encoding="utf-8")
    with pytest.raises(PredictFileError, match=r"line\(s\) 6 "):
        predict_file(full_classifier, FileJob(source, out, chunk_size=2), progress=False)
    assert out.read_text(encoding="utf-8") == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.csv"]


def test_new_columns_in_later_json_rows(tmp_path: Path, full_classifier: Any):
    source = tmp_path / "in.jsonl"
    source.write_text(f'{{"text": "{HAM_TEXT}"}}\n{{"text": "{SPAM_TEXT}", "extra": 1}}\n', encoding="utf-8")
    with pytest.raises(PredictFileError, match=r"column\(s\) 'extra' first appear at line 2; .*--out out\.jsonl"):
        predict_file(full_classifier, FileJob(source, tmp_path / "out.csv", chunk_size=1), progress=False)
    out = tmp_path / "out.jsonl"
    predict_file(full_classifier, FileJob(source, out, chunk_size=1), progress=False)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in rows] == ["ham", "spam"] and rows[1]["extra"] == 1 and "extra" not in rows[0]


def test_input_columns_named_like_outputs_are_kept_as_input_columns(tmp_path: Path, full_classifier: Any):
    source = write_input(
        tmp_path / "labeled.csv", [{"text": SPAM_TEXT, "label": "spam"}, {"text": HAM_TEXT, "label": "ham"}]
    )
    out = tmp_path / "out.csv"
    predict_file(full_classifier, FileJob(source, out), progress=False)
    table = pd.read_csv(out)
    assert list(table.columns) == ["text", "input_label", "label", "score", "p_ham", "p_spam"]
    assert table["input_label"].tolist() == table["label"].tolist() == ["spam", "ham"]


def test_reader_streams_in_chunks_of_the_asked_size(tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "".join(f"message {i}\n" for i in range(10)), encoding="utf-8")
    chunks = list(TableReader(source, "csv", chunk_size=4))
    assert [len(c.frame) for c in chunks] == [4, 4, 2]
    assert [c.numbers for c in chunks][-1] == [9, 10] and chunks[-1].done == source.stat().st_size


def test_cli_predict_file_with_out_stdout_and_errors(
    tmp_path: Path, full_model_dir: Path, full_classifier: Any, capsys: pytest.CaptureFixture[str]
):
    source = write_input(tmp_path / "in.csv", ROWS[:3])
    out = tmp_path / "results" / "predictions.parquet"
    assert main(["predict", str(full_model_dir), "--file", str(source), "--out", str(out), "--device", "cpu"]) == 0
    assert f"3 rows -> {out}" in capsys.readouterr().err
    assert read_output(out)["label"].tolist() == expected_labels(full_classifier, [r["text"] for r in ROWS[:3]])

    lines = tmp_path / "messages"  # no extension: plain text
    lines.write_text(f"{SPAM_TEXT}\n{HAM_TEXT}\n", encoding="utf-8")
    assert main(["predict", str(full_model_dir), "--file", str(lines)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["text"], r["label"]) for r in printed] == [(SPAM_TEXT, "spam"), (HAM_TEXT, "ham")]

    assert main(["predict", str(full_model_dir), "--file", str(tmp_path / "missing.csv")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: --file {tmp_path / 'missing.csv'} does not exist; pass an existing file"
    )
    assert main(["predict", str(full_model_dir), "a text", "--file", str(lines)]) == 2
    assert "not both" in capsys.readouterr().err


def test_progress_bar_goes_to_stderr(tmp_path: Path, full_classifier: Any, capsys: pytest.CaptureFixture[str]):
    source = tmp_path / "messages.txt"
    source.write_text(f"{SPAM_TEXT}\n{HAM_TEXT}\n", encoding="utf-8")
    predict_file(full_classifier, FileJob(source, tmp_path / "o.csv"), progress=True)
    captured = capsys.readouterr()
    assert "messages.txt: 100%" in captured.err and captured.out == ""


def test_predict_file_reads_a_headerless_latin1_csv_with_the_training_readers_options(
    tmp_path: Path, full_model_dir: Path, full_classifier: Any, capsys: pytest.CaptureFixture[str]
):
    texts = [f"{SPAM_TEXT} \u00a31000", f"{HAM_TEXT} caf\u00e9"]
    source = tmp_path / "comments.csv"
    source.write_bytes("".join(f'{i},"{t}"\n' for i, t in enumerate(texts)).encode("latin-1"))  # id,text
    out = tmp_path / "predictions.csv"
    command = ["predict", str(full_model_dir), "--file", str(source), "--out", str(out)]
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "add data.encoding=latin-1" in err, err
    assert main([*command, "data.encoding=latin-1"]) == 2  # the suggestion is accepted; the header is next
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--text-column" in err and "encoding" not in err, err
    assert not out.exists()

    for reading in (["data.text_column=1"], ["--text-column", "1"]):  # a position, as in training
        assert main([*command, "data.encoding=latin-1", "data.header=false", *reading]) == 0
        written = read_output(out)
        assert written["1"].tolist() == texts  # the input columns (numbered 0, 1) are kept, texts decoded right
        assert written["label"].tolist() == expected_labels(full_classifier, texts)

    assert main([*command, "data.header=false"]) == 2
    assert "data.text_column=N" in capsys.readouterr().err
    assert main([*command, "data.encoding=klingon"]) == 2  # checked as the training reader checks it
    assert "data.encoding='klingon' is not a text encoding" in capsys.readouterr().err
    assert main([*command, "data.labels={a: 0}"]) == 2
    assert "takes file-reading options data.encoding=... data.header=... data.text_column=..." in (
        capsys.readouterr().err
    )
