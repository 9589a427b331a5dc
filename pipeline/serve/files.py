"""Chunked readers and atomic writers for tables of texts: files larger than memory, one chunk at a time.

In: CSV / TSV (with a header), JSON lines, parquet, or plain text (one message per line). Out: CSV, JSON lines
or parquet, chosen by the output's extension. Readers stream (pandas ``chunksize``, pyarrow
``iter_batches``, line chunks) and number the rows so errors can name them; a writer writes into a temporary
file beside the target and renames it only when every chunk is in, so a crash or a bad row never leaves a
half-written output. Errors are one-line :class:`PredictFileError` messages that name the problem and the fix,
like the training data readers in :mod:`pipeline.data`.

Only pandas / pyarrow / the standard library here: prediction must not load the training stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import DataError

INPUT_FORMATS = ("csv", "tsv", "jsonl", "parquet", "text")
OUTPUT_FORMATS = ("csv", "jsonl", "parquet")
_INPUT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
}
_OUTPUT_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_TEXT_HINTS = ("text", "sms", "message", "msg", "body", "content", "sentence", "v2")
_MAX_ERR_CHARS = 300


class PredictFileError(DataError):
    """An input or output file of ``spam-tune predict --file`` is unusable; the message says how to fix it."""


def _one_line(err: BaseException | str) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= _MAX_ERR_CHARS else text[: _MAX_ERR_CHARS - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Formats


def input_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in INPUT_FORMATS:
            raise PredictFileError(f"unknown --format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix in _INPUT_BY_SUFFIX:
        return _INPUT_BY_SUFFIX[suffix]
    if not suffix:
        return "text"  # a file without an extension: one message per line
    raise PredictFileError(
        f"cannot tell the format of {path} from its extension {suffix!r}; pass --format {'|'.join(INPUT_FORMATS)}"
    )


def output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _OUTPUT_BY_SUFFIX:
        raise PredictFileError(
            f"cannot write {path}: its extension {suffix or '(none)'!r} is not one of .csv, .jsonl, .parquet; "
            "name the output e.g. predictions.csv"
        )
    return _OUTPUT_BY_SUFFIX[suffix]


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class Chunk:
    """Consecutive rows of the input, as read, with their human row numbers (for error messages)."""

    frame: pd.DataFrame
    numbers: list[int]
    done: int
    """Progress after this chunk, in the reader's unit (bytes for text formats, rows for parquet)."""


@dataclass
class TableReader:
    """Streams ``path`` in chunks of ``chunk_size`` rows; ``unit`` says what numbers rows (``row`` or ``line``)."""

    path: Path
    fmt: str
    chunk_size: int
    encoding: str = "utf-8"
    """Of the text formats (CSV/TSV/JSON lines/plain text); a UTF-8 BOM is skipped."""
    header: bool = True
    """CSV/TSV: the first row names the columns; ``False``: columns are numbered 0, 1, ... (``data.header=false``)."""
    unit: str = field(init=False)
    total: int = field(init=False)
    """Progress total: file size in bytes, or row count for parquet."""
    progress_unit: str = field(init=False)

    def __post_init__(self) -> None:
        _check_file(self.path)
        self.unit = "line" if self.fmt in ("jsonl", "text") else "row"
        if self.fmt == "parquet":
            self._parquet = _open_parquet(self.path)
            self.total, self.progress_unit = self._parquet.metadata.num_rows, "row"
        else:
            self.total, self.progress_unit = self.path.stat().st_size, "B"

    def columns(self) -> list[str] | None:
        """Column names known before reading (parquet); None when only the data tells (CSV header, JSON keys)."""
        return [str(n) for n in self._parquet.schema_arrow.names] if self.fmt == "parquet" else None

    def __iter__(self) -> Iterator[Chunk]:
        if self.fmt in ("csv", "tsv"):
            return self._delimited()
        if self.fmt == "jsonl":
            return self._jsonl()
        if self.fmt == "parquet":
            return self._parquet_batches()
        return self._text()

    def _delimited(self) -> Iterator[Chunk]:
        sep = "," if self.fmt == "csv" else "\t"
        read = 0
        with self.path.open("rb") as handle:
            try:
                # dtype=str, no NA parsing: a message "NA" or "null" is text, ids keep their leading zeros.
                chunks = pd.read_csv(
                    handle,
                    sep=sep,
                    dtype=str,
                    keep_default_na=False,
                    chunksize=self.chunk_size,
                    encoding=self.encoding,
                    header=0 if self.header else None,
                )
                for frame in chunks:
                    if frame.empty:  # a header without rows
                        continue
                    numbers = list(range(read + 1, read + len(frame) + 1))
                    read += len(frame)
                    yield Chunk(frame.reset_index(drop=True), numbers, handle.tell())
            except pd.errors.EmptyDataError:
                return
            except UnicodeDecodeError:
                name = "UTF-8" if _is_utf8(self.encoding) else self.encoding
                raise PredictFileError(self._not_decodable(f"is not valid {name} (after data row {read})")) from None
            except (pd.errors.ParserError, ValueError) as err:
                other = "tsv" if self.fmt == "csv" else "csv"
                kind = "with a header row" if self.header else "without a header row"
                raise PredictFileError(
                    f"{self.path} is not a valid {self.fmt.upper()} file {kind} after data row {read} "
                    f"({_one_line(err)}); check its delimiter and quoting, or pass --format {other}"
                ) from None

    def _not_decodable(self, where: str) -> str:
        """What to say of bytes that ``self.encoding`` cannot decode, with the fixes ``predict --file`` accepts."""
        if _is_utf8(self.encoding):
            return (
                f"{self.path} {where}; add data.encoding=latin-1 (or the file's encoding), or re-encode it, e.g. "
                f"iconv -f latin1 -t utf-8 {self.path} > {self.path.stem}.utf8{self.path.suffix}"
            )
        return f"{self.path} {where}; set data.encoding to the file's encoding"

    def _lines(self) -> Iterator[tuple[int, str, int]]:
        """(line number, text without its line ending, bytes read so far), checking UTF-8 line by line."""
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf") and _is_utf8(self.encoding):
                    raw = raw[3:]  # the BOM that spreadsheet exports add
                try:
                    line = raw.decode(self.encoding)
                except UnicodeDecodeError as err:
                    name = "UTF-8" if _is_utf8(self.encoding) else self.encoding
                    where = f"line {number} is not valid {name} (byte 0x{raw[err.start]:02x})"
                    raise PredictFileError(self._not_decodable(where)) from None
                yield number, line.removesuffix("\n").removesuffix("\r"), handle.tell()

    def _text(self) -> Iterator[Chunk]:
        # Every line is a row, blank ones too: dropping them would shift every later prediction against
        # its line (a reported bug). Blank rows are refused or kept as empty later (predict --allow-empty).
        texts: list[str] = []
        numbers: list[int] = []
        done = 0
        for number, line, done in self._lines():
            texts.append(line)
            numbers.append(number)
            if len(texts) == self.chunk_size:
                yield Chunk(pd.DataFrame({"text": texts}), numbers, done)
                texts, numbers = [], []
        if texts:
            yield Chunk(pd.DataFrame({"text": texts}), numbers, done)

    def _jsonl(self) -> Iterator[Chunk]:
        records: list[dict[str, Any]] = []
        numbers: list[int] = []
        done = 0
        for number, line, done in self._lines():
            if not line.strip():
                continue  # blank lines hold no record in JSON lines
            if number == 1 and line.lstrip().startswith("["):
                raise PredictFileError(
                    f"{self.path} holds a JSON array, which cannot be streamed; write JSON lines (one object per "
                    f"line), e.g. jq -c '.[]' {self.path} > {self.path.stem}.jsonl"
                )
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PredictFileError(
                    f"{self.path} line {number} is not valid JSON ({err.msg}); "
                    'expected JSON lines: one object like {"text": ...} per line'
                ) from None
            if not isinstance(record, dict):
                raise PredictFileError(
                    f"{self.path} line {number} is a {type(record).__name__}, not a JSON object; "
                    'write one object like {"text": ...} per line'
                )
            records.append(record)
            numbers.append(number)
            if len(records) == self.chunk_size:
                yield Chunk(pd.DataFrame.from_records(records), numbers, done)
                records, numbers = [], []
        if records:
            yield Chunk(pd.DataFrame.from_records(records), numbers, done)

    def _parquet_batches(self) -> Iterator[Chunk]:
        read = 0
        try:
            for batch in self._parquet.iter_batches(batch_size=self.chunk_size):
                frame = batch.to_pandas()
                numbers = list(range(read + 1, read + len(frame) + 1))
                read += len(frame)
                yield Chunk(frame, numbers, read)
        except (pa.ArrowException, OSError) as err:
            raise PredictFileError(
                f"{self.path} could not be read after row {read} ({_one_line(err)}); re-export the parquet file"
            ) from None


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise PredictFileError(f"--file {path} does not exist; pass an existing file")
    if path.is_dir():
        raise PredictFileError(f"--file {path} is a directory; pass the data file inside it")
    if path.stat().st_size == 0:
        raise PredictFileError(f"--file {path} is empty (0 bytes); pass a file with at least one text")


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise PredictFileError(
            f"{path} is not a readable parquet file ({_one_line(err)}); "
            "re-export it, or pass --format with its real format"
        ) from None


def text_column_error(path: Path, column: str | int, columns: list[str]) -> PredictFileError:
    """The text column is missing: name the columns found and suggest the likeliest one."""
    if isinstance(column, int):  # data.header=false: columns by position
        return PredictFileError(
            f"{path} has {len(columns)} column(s) per row, so no column {column} (0 = first); pass "
            f"data.text_column=N with N below {len(columns)}"
        )
    hinted = [c for c in columns if c.strip().lower() in _TEXT_HINTS]
    guess = hinted[0] if hinted else columns[0] if len(columns) == 1 else "NAME"
    found = ", ".join(repr(c) for c in columns) or "none"
    return PredictFileError(
        f"{path} has no column {column!r} (columns found: {found}); pass --text-column {guess} to name the texts"
    )


# ---------------------------------------------------------------------------------------------
# Writing


def _umask() -> int:
    mask = os.umask(0o022)  # the umask can only be read by setting it
    os.umask(mask)
    return mask


class TableWriter:
    """Appends chunks to a temporary file beside ``path``; :meth:`commit` renames it into place.

    Use as a context manager: leaving it by an exception removes the temporary file and leaves any
    existing ``path`` untouched. CSV and parquet need the same columns in every chunk (the first chunk's);
    JSON lines do not.
    """

    def __init__(self, path: Path, fmt: str | None = None) -> None:
        self.path = Path(path)
        self.fmt = fmt or output_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; the output gets the usual permissions
        self.tmp = Path(tmp)
        self._handle: IO[str] | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._columns: list[str] | None = None
        self._schema: pa.Schema | None = None
        self.rows = 0

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            self.abort()

    def write(self, frame: pd.DataFrame, first_row: str = "") -> None:
        """Append ``frame``; ``first_row`` (e.g. "row 2001") names where it starts, for error messages."""
        if self._columns is None:
            self._columns = [str(c) for c in frame.columns]
        elif self.fmt != "jsonl":
            extra = [str(c) for c in frame.columns if str(c) not in self._columns]
            if extra:
                raise PredictFileError(
                    f"column(s) {', '.join(map(repr, extra))} first appear at {first_row or 'a later chunk'}; "
                    f"{self.fmt} output needs the columns of the first rows throughout: write JSON lines "
                    f"(--out {self.path.with_suffix('.jsonl').name}) instead"
                )
            frame = frame.reindex(columns=self._columns)
        if self.fmt == "csv":
            self._text_handle()
            frame.to_csv(self._handle, index=False, header=self.rows == 0, lineterminator="\n")
        elif self.fmt == "jsonl":
            self._text_handle()
            assert self._handle is not None
            self._handle.write(frame.to_json(orient="records", lines=True, force_ascii=False, date_format="iso"))
        else:
            self._write_parquet(frame, first_row)
        self.rows += len(frame)

    def _text_handle(self) -> None:
        if self._handle is None:
            self._handle = self.tmp.open("w", encoding="utf-8", newline="")

    def _write_parquet(self, frame: pd.DataFrame, first_row: str) -> None:
        try:
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        except (pa.ArrowException, KeyError, ValueError, TypeError) as err:
            raise PredictFileError(
                f"rows from {first_row or 'a later chunk'} do not fit the parquet schema of the first rows "
                f"({_one_line(err)}); write CSV or JSON lines instead"
            ) from None
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self.tmp, table.schema)
        self._parquet.write_table(table)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def commit(self) -> Path:
        self._close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
