"""``spam-tune predict MODEL --file IN [--out OUT]``: classify a table of texts of any size, chunk by chunk.

Each chunk is read, classified (the classifier sorts it by length so batches carry little padding, then
restores the order) and appended to the output, so memory stays bounded by ``--chunk-size`` and the output
rows are the input rows in the same order: the input columns, then ``label`` (the model's decision, with
its saved threshold), ``score`` (the probability of that label) and ``p_<label>`` per class. An input
column with one of those names is kept as ``input_<name>``.

Empty texts (blank lines, empty cells, missing JSON keys, nulls) are refused by default with the row
numbers, because a silently dropped row shifts every later prediction against its input. With
``--allow-empty`` they stay in the output, in place, with an empty label and no scores.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.serve.cli_args import DEFAULT_CHUNK_SIZE
from pipeline.serve.files import (
    Chunk,
    PredictFileError,
    TableReader,
    TableWriter,
    input_format,
    output_format,
    text_column_error,
)
from pipeline.serve.scoring import softmax

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileJob:
    path: Path
    out: Path | None
    """None: JSON lines on stdout."""
    text_column: str | int | None = None
    """Default ``text``; a position (0 = first column) with ``header=False``; plain text files have no columns."""
    fmt: str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    allow_empty: bool = False
    encoding: str = "utf-8"
    header: bool = True

    @property
    def text_column_or_default(self) -> str | int:
        return "text" if self.text_column is None else self.text_column

    def check(self) -> tuple[str, str | None]:
        """(input format, output format) after checking what can be checked before the model loads."""
        fmt = input_format(self.path, self.fmt)
        if self.chunk_size < 1:
            raise PredictFileError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        if fmt == "text" and self.text_column not in (None, "text"):
            raise PredictFileError(
                f"{self.path} is plain text (one message per line) and has no columns; drop --text-column"
            )
        self._check_reading(fmt)
        if self.out is None:
            return fmt, None
        if self.out.resolve() == self.path.resolve():
            raise PredictFileError(f"--out {self.out} is the input file; write the predictions to a new file")
        return fmt, output_format(self.out)

    def _check_reading(self, fmt: str) -> None:
        """The ``data.*`` reading settings, checked as the training reader checks them (same keys, same rules)."""
        from pipeline.config import check_text_encoding

        check_text_encoding(self.encoding)
        if fmt in ("jsonl", "text") and "a\n".encode(self.encoding) != b"a\n":
            raise PredictFileError(
                f"{self.path} is read line by line ({fmt}), which needs an ASCII-compatible encoding, not "
                f"data.encoding={self.encoding}; re-encode it to UTF-8"
            )
        if self.header:
            if isinstance(self.text_column, int):
                raise PredictFileError(
                    f"data.text_column={self.text_column} is a column position, which needs data.header=false; "
                    "give the column's name instead"
                )
            return
        if fmt not in ("csv", "tsv"):
            raise PredictFileError(f"data.header=false applies to CSV/TSV files, not {fmt}; drop it")
        if not isinstance(self.text_column, int) or self.text_column < 0:
            raise PredictFileError(
                "data.header=false reads columns by position; pass data.text_column=N (0 = first column), "
                "e.g. data.text_column=1"
            )


def file_reading(items: list[str], text_column_flag: str | None) -> dict[str, Any]:
    """``data.encoding=... data.header=false data.text_column=N`` (the training reader's keys) as FileJob fields."""
    from pipeline.config import reader_overrides

    values = reader_overrides(items, ("encoding", "header", "text_column"), command="spam-tune predict --file")
    if "text_column" in values and text_column_flag is not None:
        raise PredictFileError("pass --text-column or data.text_column=..., not both")
    if not isinstance(values.get("header", True), bool):
        raise PredictFileError(f"data.header must be true or false, got {values['header']!r}")
    if not isinstance(values.get("encoding", ""), str):
        raise PredictFileError(f"data.encoding must be a name such as latin-1, got {values['encoding']!r}")
    if "text_column" not in values:
        headerless = values.get("header") is False and text_column_flag is not None and text_column_flag.isdigit()
        values["text_column"] = int(text_column_flag) if headerless else text_column_flag  # a position, or a name
    return values


def reader_of(job: FileJob, fmt: str) -> TableReader:
    return TableReader(job.path, fmt, job.chunk_size, encoding=job.encoding, header=job.header)


def prediction_columns(id2label: dict[int, str]) -> list[str]:
    return ["label", "score", *(f"p_{id2label[i]}" for i in sorted(id2label))]


def _text_or_none(value: Any) -> str | None:
    """The text of one cell; None when it is missing, NaN or only whitespace."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = value if isinstance(value, str) else str(value)  # JSON/parquet may hold numbers as texts
    return text if text.strip() else None


def chunk_texts(chunk: Chunk, job: FileJob, unit: str) -> list[str | None]:
    column = job.text_column_or_default
    if column not in chunk.frame.columns:
        raise text_column_error(job.path, column, [str(c) for c in chunk.frame.columns])
    texts = [_text_or_none(v) for v in chunk.frame[column].tolist()]
    empty = [n for n, t in zip(chunk.numbers, texts, strict=True) if t is None]
    if empty and not job.allow_empty:
        shown = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        where = "data rows counted from 1 after the header" if unit == "row" else "counted from 1"
        raise PredictFileError(
            f"{job.path} has empty or missing text in {unit}(s) {shown} ({where}); remove those rows, "
            "or pass --allow-empty to keep them in the output with an empty label"
        )
    return texts


def classify_texts(classifier: Any, texts: list[str | None]) -> pd.DataFrame:
    """The prediction columns for ``texts``, in order; empty texts (None) get an empty label and no scores."""
    id2label = {int(k): v for k, v in classifier.id2label.items()}
    present = [i for i, t in enumerate(texts) if t is not None]
    probs = np.full((len(texts), len(id2label)), np.nan)
    labels: list[str | None] = [None] * len(texts)
    scores = np.full(len(texts), np.nan)
    if getattr(classifier, "multi_label", False):  # stand-in classifiers of the tests have no such attribute
        return _label_sets(classifier, texts, id2label, present)
    if present:
        found = softmax(classifier.logits([texts[i] for i in present]).astype(np.float64))
        decisions = classifier.decide(found)
        probs[present] = found
        scores[present] = found[np.arange(len(present)), decisions]
        for row, decision in zip(present, decisions, strict=True):
            labels[row] = id2label[int(decision)]
    columns = prediction_columns(id2label)
    frame = pd.DataFrame({"label": pd.Series(labels, dtype=object), "score": scores})
    for i, name in enumerate(columns[2:]):
        frame[name] = probs[:, sorted(id2label)[i]]
    return frame


MULTI_LABEL_SEPARATOR = "|"
"""How a predicted label set is written into the one ``label`` column (as ``data.label_separator`` reads it)."""


def _label_sets(classifier: Any, texts: list[str | None], id2label: dict[int, str], present: list[int]) -> pd.DataFrame:
    """Multi-label: ``label`` holds the decided set (``toxic|insult``, '' for none), then ``p_<label>`` per label."""
    probs = np.full((len(texts), len(id2label)), np.nan)
    labels: list[str | None] = [None] * len(texts)
    if present:
        found = classifier.to_probabilities(classifier.logits([texts[i] for i in present]))
        probs[present] = found
        for row, chosen in zip(present, classifier.decide(found), strict=True):
            labels[row] = MULTI_LABEL_SEPARATOR.join(id2label[i] for i in sorted(id2label) if chosen[i])
    frame = pd.DataFrame({"label": pd.Series(labels, dtype=object)})
    for i in sorted(id2label):
        frame[f"p_{id2label[i]}"] = probs[:, i]
    return frame


def output_frame(inputs: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Input columns (renamed ``input_<name>`` where they clash with a prediction column), then predictions."""
    clash = {c: f"input_{c}" for c in inputs.columns if str(c) in predictions.columns}
    return pd.concat([inputs.rename(columns=clash).reset_index(drop=True), predictions], axis=1)


def _write_stdout(frame: pd.DataFrame, stream: IO[str]) -> None:
    stream.write(frame.to_json(orient="records", lines=True, force_ascii=False, date_format="iso"))
    stream.flush()


def predict_file(classifier: Any, job: FileJob, *, progress: bool | None = None, stdout: IO[str] | None = None) -> int:
    """Classify every row of ``job.path`` into ``job.out`` (atomically) or stdout; returns the row count.

    ``progress=None`` shows the bar only when stderr is a terminal.
    """
    fmt, out_fmt = job.check()
    reader = reader_of(job, fmt)
    if reader.columns() is not None and fmt != "text" and job.text_column_or_default not in reader.columns():
        raise text_column_error(job.path, job.text_column_or_default, reader.columns() or [])
    started = time.perf_counter()
    rows = 0
    bar = tqdm(
        total=reader.total,
        unit=reader.progress_unit,
        unit_scale=True,
        desc=job.path.name,
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )
    writer = TableWriter(job.out, out_fmt) if job.out is not None else None
    try:
        done = 0
        for chunk in reader:
            texts = chunk_texts(chunk, job, reader.unit)
            frame = output_frame(chunk.frame, classify_texts(classifier, texts))
            if writer is not None:
                writer.write(frame, f"{reader.unit} {chunk.numbers[0]}")
            else:
                _write_stdout(frame, stdout or sys.stdout)
            rows += len(frame)
            bar.update(chunk.done - done)
            done = chunk.done
        if rows == 0:
            raise PredictFileError(f"{job.path} has no data rows; add at least one text")
        if writer is not None:
            writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    log.info("classified %d rows in %.1f s (%.0f rows/s) -> %s", rows, seconds, rows / seconds, job.out or "stdout")
    return rows


def run_file_command(args: Any) -> int:
    """``spam-tune predict MODEL --file IN ...``: check the file options, load the model, classify."""
    from pipeline.serve.classifier import Classifier

    if args.texts:
        raise PredictFileError("pass texts as arguments or --file FILE, not both")
    job = FileJob(
        path=Path(args.file),
        out=Path(args.out) if args.out else None,
        fmt=args.file_format,
        chunk_size=args.chunk_size,
        allow_empty=args.allow_empty,
        **file_reading(args.reading, args.text_column),
    )
    job.check()
    reader_of(job, input_format(job.path, job.fmt))  # missing/empty file: fail before the model loads
    classifier = Classifier(
        args.model_dir, batch_size=args.batch_size, device=args.device, backend=args.backend, dtype=args.dtype
    )
    rows = predict_file(classifier, job)
    if job.out is not None:
        print(f"{rows} rows -> {job.out}", file=sys.stderr)
    return 0
