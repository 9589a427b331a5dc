"""Read a data source into a two-column table: ``text`` and ``label`` (raw label values, as read).

Formats: the UCI TSV (``label<TAB>text``, no header), CSV/TSV with or without a header (``data.header``),
JSON lines (or one JSON array), parquet, and Hub datasets. We decode text ourselves (``data.encoding``, UTF-8 by
default) so that a bad byte is reported with its offset and line instead of as a parser crash; every problem is
a one-line :class:`~pipeline.errors.DataError`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import DataConfig
from pipeline.data.clean import clean_and_label, is_unicode_text
from pipeline.data.download import fetch_uci
from pipeline.errors import DataError, one_line

_FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    "": "uci",  # the UCI file ships without an extension
}
_FORMATS = "uci|csv|tsv|jsonl|parquet"


def read_table(cfg: DataConfig) -> tuple[pd.DataFrame, str]:
    """Read the configured source into columns ``text`` and ``label`` (raw, as read) plus a description."""
    if cfg.source == "uci":
        path = fetch_uci(cfg)
        return _read_file(path, "uci", cfg), f"uci:{path}"
    if cfg.source == "hub":
        return _read_hub(cfg), f"hub:{cfg.hub_name}"
    path = Path(str(cfg.path)).expanduser()
    return _read_file(path, _file_format(path, cfg.format), cfg), str(path)


def read_labeled_file(cfg: DataConfig, path: str, fmt: str | None = None) -> pd.DataFrame:
    """Read any labeled data file (e.g. to evaluate a saved model on it): columns ``text`` and ``label`` (id).

    Same readers and checks as ``data.source=file``, then cleaning and label mapping; no dedupe,
    balancing or splitting, since every row should be scored.
    """
    file = Path(path).expanduser()
    # The extension decides when it is a known one: the run's data.format described its training
    # file, which need not be this one. Otherwise fall back to data.format.
    # `fmt` (e.g. `spam-tune evaluate --format uci`) overrides both.
    if fmt is None:
        fmt = "auto" if file.suffix.lower() in _FORMAT_BY_SUFFIX and file.suffix else cfg.format
    df, _ = clean_and_label(_read_file(file, _file_format(file, fmt), cfg), cfg, str(file))
    return df


def _file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix and suffix not in _FORMAT_BY_SUFFIX:
        raise DataError(f"cannot tell the format of {path} from its extension {suffix!r}; set data.format={_FORMATS}")
    if suffix:
        return _FORMAT_BY_SUFFIX[suffix]
    # No extension: the UCI file has none, but so has many a CSV saved by hand; its first line tells them apart.
    _check_file(path)
    first = _first_line(path)
    return "csv" if "," in first and "\t" not in first else "uci"


def _first_line(path: Path, size: int = 65536) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(size)
    except OSError as err:
        raise DataError(f"cannot read data file {path} ({one_line(err)}); check its permissions") from None
    return next((line for line in head.decode("latin-1").splitlines() if line.strip()), "")


def _read_file(path: Path, fmt: str, cfg: DataConfig) -> pd.DataFrame:
    """Read one local file of format ``fmt`` into columns ``text``, ``label`` (raw)."""
    _check_file(path)
    if not cfg.header and fmt in ("jsonl", "parquet"):
        raise DataError(f"{path} is {fmt}, whose rows name their columns; drop data.header=false for it")
    if fmt == "parquet":
        raw = _read_parquet(path)
    else:
        text = _decode(path, cfg.encoding)
        if fmt == "uci":
            # The UCI TSV has no header: its columns are label, text whatever data.*_column say.
            df = _parse_uci(text, path, pandas_quoting=cfg.split_mode == "book")
            if df.empty:
                raise DataError(f"{path} has no data rows; expected lines of 'label<TAB>text'")
            return df
        if fmt in ("csv", "tsv"):
            raw = _parse_delimited(text, path, fmt, header=cfg.header)
        elif fmt == "jsonl":
            raw = _parse_json(text, path)
        else:  # pragma: no cover - DataConfig's Literal type rules this out
            raise DataError(f"unknown data.format {fmt!r}; use one of {_FORMATS}")
    if raw.empty:
        raise DataError(f"{path} has no data rows; add rows with columns {cfg.text_column!r} and {cfg.label_column!r}")
    return _select_columns(raw, cfg, str(path))


def _check_file(path: Path) -> None:
    if not path.exists():
        where = path if path.is_absolute() else f"{path} (looked at {path.absolute()})"
        raise DataError(f"data file {where} does not exist; pass an existing file (data.path=FILE)")
    if path.is_dir():
        raise DataError(f"data path {path} is a directory, not a file; point data.path at the data file inside it")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty (0 bytes); pass a file with data, or re-download it")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read data file {path} ({one_line(err)}); check its permissions") from None


def _decode(path: Path, encoding: str) -> str:
    """Decode ourselves so a bad byte is reported with its offset and line, not as a parser crash."""
    data = _read_bytes(path)
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    start = 3 if utf8 and data.startswith(b"\xef\xbb\xbf") else 0  # skip the BOM that spreadsheet exports add
    try:
        return data[start:].decode(encoding)
    except UnicodeDecodeError as err:
        offset = start + err.start
        line = data.count(b"\n", 0, offset) + 1
        other = "data.encoding=latin-1 (or the file's encoding)" if utf8 else "data.encoding to the file's encoding"
        name = "UTF-8" if utf8 else encoding
        raise DataError(
            f"{path} is not valid {name} (byte 0x{data[offset]:02x} at offset {offset}, line {line}); "
            f"set {other}, or re-encode it, e.g. iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8{path.suffix}"
        ) from None


def _parse_uci(text: str, path: Path, *, pandas_quoting: bool) -> pd.DataFrame:
    """Parse the UCI TSV ``label<TAB>text`` (no header) into columns text, label."""
    if text.strip() and "\t" not in text:  # e.g. a CSV read as UCI: every text would be empty
        fmt = "csv" if "," in text else "tsv"
        raise DataError(
            f"{path} has no line of 'label<TAB>text', so it is not in the UCI format (data.format=uci); set "
            f"data.format=auto to choose the reader from the file's name and first line, or data.format={fmt}"
        )
    if pandas_quoting:
        # Book mode: exactly the book's pd.read_csv(sep="\t", header=None) with its default quoting,
        # which merges a few lines with unbalanced double quotes (5,572 rows from 5,574 lines).
        try:
            df = pd.read_csv(
                io.StringIO(text), sep="\t", header=None, names=["label", "text"], dtype=str, keep_default_na=False
            )
        except pd.errors.EmptyDataError:
            return pd.DataFrame({"text": [], "label": []})
        except pd.errors.ParserError as err:
            raise DataError(
                f"{path} is not a valid UCI TSV file ({one_line(err)}); expected lines of 'label<TAB>text'"
            ) from None
        return df[["text", "label"]]
    # Otherwise no quoting at all (like csv.QUOTE_NONE, every line is one message), split on the first
    # tab only so a tab inside a message stays part of its text instead of breaking the parse.
    rows = []
    for raw_line in text.split("\n"):
        line = raw_line.removesuffix("\r")
        if line.strip():
            label, _, message = line.partition("\t")
            rows.append((message, label))
    return pd.DataFrame(rows, columns=["text", "label"])


def _parse_delimited(text: str, path: Path, fmt: str, *, header: bool = True) -> pd.DataFrame:
    # dtype=str and no NA parsing: a message "NA" or "null" is text, and labels like 0/1 stay exact
    # strings; empty fields become "" and are dropped (texts) or reported (labels) later. Without a header
    # the columns are numbered 0, 1, ... and data.text_column / data.label_column are such positions.
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep="," if fmt == "csv" else "\t",
            dtype=str,
            keep_default_na=False,
            header=0 if header else None,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except pd.errors.ParserError as err:
        other = "tsv" if fmt == "csv" else "csv"
        raise DataError(
            f"{path} is not a valid {fmt.upper()} file with a header row ({one_line(err)}); "
            f"check its delimiter and quoting, or set data.format={other} (or uci for a headerless label<TAB>text file)"
        ) from None


def _parse_json(text: str, path: Path) -> pd.DataFrame:
    """JSON lines (one object per line); a file holding one JSON array of objects is accepted too."""
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path} is not valid JSON (line {err.lineno}: {err.msg}); fix it or write JSON lines"
            ) from None
        numbered: Iterable[tuple[int, Any]] = enumerate(records, start=1)
        unit = "item"
    else:
        numbered = []
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise DataError(
                        f"{path} line {number} is not valid JSON ({err.msg}); "
                        'expected JSON lines: one object like {"text": ..., "label": ...} per line'
                    ) from None
        unit = "line"
    rows = []
    for number, record in numbered:
        if not isinstance(record, dict):
            raise DataError(
                f"{path} {unit} {number} is a {type(record).__name__}, not a JSON object; write one object per row"
            )
        if any(isinstance(value, str) and not is_unicode_text(value) for value in record.values()):
            # JSON may escape half a surrogate pair ("\ud800"): valid JSON, but not text any tokenizer can take.
            raise DataError(
                f"{path} {unit} {number} holds a lone surrogate escape (like \\ud800), which is not Unicode text; "
                "fix or drop that value"
            )
        rows.append(record)
    return pd.DataFrame(rows)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (ValueError, OSError, TypeError) as err:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise DataError(
            f"{path} is not a readable parquet file ({one_line(err)}); "
            "re-export it, or set data.format to its real format"
        ) from None


def _read_hub(cfg: DataConfig) -> pd.DataFrame:
    import datasets  # only Hub sources need it; keeps plain file reading light (predict, serve)

    try:
        ds = datasets.load_dataset(cfg.hub_name, split=cfg.hub_split)
    except Exception as err:  # network, auth, unknown dataset or split: all user-fixable here
        raise DataError(
            f"could not load the Hugging Face dataset {cfg.hub_name!r} split {cfg.hub_split!r} "
            f"({type(err).__name__}: {one_line(err)}); check data.hub_name and data.hub_split and the network, "
            "or download the data and pass data.source=file data.path=FILE"
        ) from None
    df = ds.to_pandas()
    feature = ds.features.get(cfg.label_column)
    if isinstance(feature, datasets.ClassLabel) and cfg.label_column in df:
        # Hub datasets store labels as ClassLabel ids; their names (e.g. ham/spam) are the raw labels
        # that data.labels maps, so the defaults work for e.g. ucirvine/sms_spam.
        names = feature.names
        df[cfg.label_column] = df[cfg.label_column].map(lambda i: names[i] if 0 <= i < len(names) else i)
    if df.empty:
        raise DataError(
            f"the Hugging Face dataset {cfg.hub_name!r} split {cfg.hub_split!r} has no rows; check data.hub_split"
        )
    return _select_columns(df, cfg, f"hub dataset {cfg.hub_name!r}")


class MissingColumnError(DataError):
    """The text or label column is not in the file; ``fix`` renders the advice for config keys or CLI options."""

    def __init__(self, where: str, *, key: str, column: str, found: list[str], guess: str) -> None:
        self.where, self.key, self.column, self.found, self.guess = where, key, column, found, guess
        super().__init__(self.message(f"data.{key}={guess}"))

    def message(self, fix: str) -> str:
        """The one-line message with ``fix`` (e.g. ``data.text_column=sms`` or ``--text-column sms``) as the advice."""
        found = ", ".join(repr(c) for c in self.found) or "none"
        what = "texts" if self.key == "text_column" else "labels"
        return (
            f"{self.where} has no column {self.column!r} (columns found: {found}); "
            f"set {fix} to the column that holds the {what}"
        )


_COLUMN_HINTS = {
    "text_column": ("text", "sms", "message", "msg", "body", "content", "sentence", "v2"),
    "label_column": ("label", "labels", "class", "category", "target", "y", "v1"),
}


def _select_columns(raw: pd.DataFrame, cfg: DataConfig, where: str) -> pd.DataFrame:
    """Pick the configured text and label columns and name them ``text`` and ``label``."""
    if not cfg.header:
        return _select_positions(raw, cfg, where)
    if cfg.label_columns:
        from pipeline.data.multilabel import select_label_columns

        return select_label_columns(raw, cfg, where)
    if cfg.text_column == cfg.label_column:
        raise DataError(f"data.text_column and data.label_column are both {cfg.text_column!r}; set them to two columns")
    columns = [str(c) for c in raw.columns]
    wanted = {"text_column": cfg.text_column, "label_column": cfg.label_column}
    for key, column in wanted.items():
        if column not in columns:
            other = wanted["label_column" if key == "text_column" else "text_column"]
            candidates = [c for c in columns if c != other]
            hinted = [c for c in candidates if c.strip().lower() in _COLUMN_HINTS[key]]
            guess = hinted[0] if hinted else candidates[0] if len(candidates) == 1 else "NAME"
            raise MissingColumnError(where, key=key, column=column, found=columns, guess=guess)
    raw = raw.set_axis(columns, axis=1)
    return pd.DataFrame({"text": raw[cfg.text_column], "label": raw[cfg.label_column]}).reset_index(drop=True)


def _select_positions(raw: pd.DataFrame, cfg: DataConfig, where: str) -> pd.DataFrame:
    """``data.header=false``: the text and label columns by position (validated as ints >= 0 in config.py)."""
    width = raw.shape[1]
    for key in ("text_column", "label_column"):
        position = getattr(cfg, key)
        if not isinstance(position, int) or position >= width:
            raise DataError(
                f"{where} has {width} column(s) (positions 0..{width - 1}) but data.{key}={position}; "
                "set it to the position of the column, counting from 0"
            )
    text, label = raw.iloc[:, int(cfg.text_column)], raw.iloc[:, int(cfg.label_column)]
    return pd.DataFrame({"text": text.to_numpy(), "label": label.to_numpy()})
