"""Data stage: read the SMS texts, clean them, map labels, balance and split them into a DatasetDict.

:func:`load_splits` runs ``read_table -> clean -> map labels -> (dedupe) -> balance -> split`` and returns
the splits plus a :class:`DataSummary` of what happened to the rows. ``data.split_mode=book`` reproduces
Raschka, *Build a Large Language Model (From Scratch)*, ch. 6 exactly (pandas' default quoting, the same
``DataFrame.sample`` calls with seed 123), so numbers can be compared with the book: on the real file
5,572 rows -> 747 ham + 747 spam -> 1045/149/300.

Every problem a user can fix is a one-line :class:`~pipeline.errors.DataError` naming the problem and the
fix; informational notes ("dropped 3 empty texts") go to this module's logger.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import json
import logging
import math
import sys
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from pipeline.config import DataConfig
from pipeline.errors import DataError
from pipeline.fileio import write_atomic

logger = logging.getLogger(__name__)

UCI_MEMBER = "SMSSpamCollection"
"""Name of the data file inside the UCI zip, and of the cached copy under ``data.cache_dir``."""
SPLITS = ("train", "validation", "test")
MIN_ROWS_PER_CLASS = 3
"""Below this a class cannot land in all three splits, so stop early with a clear message."""
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
_CHUNK = 1 << 16
_MAX_ERR_CHARS = 300  # keep quoted library errors short enough for a one-line message


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


# ---------------------------------------------------------------------------------------------
# Small helpers


def _err(message: str) -> DataError:
    # Messages quote file names and library errors; a stray newline in them must not break the
    # CLI's one-line "error: ..." contract.
    return DataError(message.replace("\r", " ").replace("\n", " "))


def _one_line(err: BaseException | str) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= _MAX_ERR_CHARS else text[: _MAX_ERR_CHARS - 3] + "..."


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Download


def fetch_uci(
    cfg: DataConfig,
    *,
    progress: bool = True,
    urlopen: Callable[..., Any] = urllib.request.urlopen,
) -> Path:
    """Return the cached, checksum-verified UCI ``SMSSpamCollection`` file, downloading it if needed.

    ``urlopen`` is injectable so tests can serve an in-memory zip instead of touching the network.
    """
    target = Path(cfg.cache_dir).expanduser() / UCI_MEMBER
    expected = cfg.sha256.strip().lower()
    if target.is_file():
        if _sha256(target.read_bytes()) == expected:
            return target
        logger.warning("cached %s does not match data.sha256; downloading it again", target)

    failures: list[str] = []
    mismatch = False
    for url in dict.fromkeys((cfg.url, cfg.mirror_url)):  # dedupe: a user may set both to one URL
        try:
            content = _extract_member(_download(url, cfg.download_timeout, progress, urlopen))
        except (OSError, http.client.HTTPException, zipfile.BadZipFile, KeyError, ValueError) as err:
            # OSError covers URLError/HTTPError/timeouts; the rest are truncated or wrong payloads.
            failures.append(f"{url} ({_one_line(err)})")
            logger.warning("download from %s failed: %s", url, _one_line(err))
            continue
        digest = _sha256(content)
        if digest != expected:
            mismatch = True
            failures.append(f"{url} (sha256 {digest} != data.sha256 {expected})")
            continue
        try:
            write_atomic(target, content)
        except OSError as err:
            raise _err(
                f"cannot write the downloaded data to {target} ({_one_line(err)}); "
                "set data.cache_dir=DIR to a writable directory"
            ) from None
        logger.info("downloaded the SMS Spam Collection from %s to %s", url, target)
        return target

    fix = "no network? download it yourself and pass data.source=file data.path=FILE"
    if mismatch:
        fix += " (if the file changed upstream on purpose, set data.sha256 to its new checksum)"
    raise _err(f"could not get a verified copy of the SMS Spam Collection from {'; nor from '.join(failures)}; {fix}")


def _download(url: str, timeout: float, progress: bool, urlopen: Callable[..., Any]) -> bytes:
    # The zip is ~200 kB, so it is held in memory: nothing touches the disk before it is verified.
    with urlopen(url, timeout=timeout) as resp:
        headers = getattr(resp, "headers", None)
        length = headers.get("Content-Length") if headers is not None else None
        total = int(length) if length and str(length).isdigit() else None
        buf = io.BytesIO()
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="SMS Spam Collection",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        ) as bar:
            while chunk := resp.read(_CHUNK):
                buf.write(chunk)
                bar.update(len(chunk))
    data = buf.getvalue()
    if total is not None and len(data) != total:
        raise ValueError(f"incomplete download: got {len(data)} of {total} bytes")
    return data


def _extract_member(payload: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return archive.read(UCI_MEMBER)  # KeyError if the zip lacks it


# ---------------------------------------------------------------------------------------------
# Reading


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
    df, _ = _prepare(_read_file(file, _file_format(file, fmt), cfg), cfg, str(file))
    return df


def _file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix not in _FORMAT_BY_SUFFIX:
        raise _err(f"cannot tell the format of {path} from its extension {suffix!r}; set data.format={_FORMATS}")
    return _FORMAT_BY_SUFFIX[suffix]


def _read_file(path: Path, fmt: str, cfg: DataConfig) -> pd.DataFrame:
    """Read one local file of format ``fmt`` into columns ``text``, ``label`` (raw)."""
    _check_file(path)
    if fmt == "parquet":
        raw = _read_parquet(path)
    else:
        text = _read_utf8(path)
        if fmt == "uci":
            # The UCI TSV has no header: its columns are label, text whatever data.*_column say.
            df = _parse_uci(text, path, pandas_quoting=cfg.split_mode == "book")
            if df.empty:
                raise _err(f"{path} has no data rows; expected lines of 'label<TAB>text'")
            return df
        if fmt in ("csv", "tsv"):
            raw = _parse_delimited(text, path, fmt)
        elif fmt == "jsonl":
            raw = _parse_json(text, path)
        else:  # pragma: no cover - DataConfig's Literal type rules this out
            raise _err(f"unknown data.format {fmt!r}; use one of {_FORMATS}")
    if raw.empty:
        raise _err(f"{path} has no data rows; add rows with columns {cfg.text_column!r} and {cfg.label_column!r}")
    return _select_columns(raw, cfg, str(path))


def _check_file(path: Path) -> None:
    if not path.exists():
        where = path if path.is_absolute() else f"{path} (looked at {path.absolute()})"
        raise _err(f"data file {where} does not exist; pass an existing file (data.path=FILE)")
    if path.is_dir():
        raise _err(f"data path {path} is a directory, not a file; point data.path at the data file inside it")
    if path.stat().st_size == 0:
        raise _err(f"data file {path} is empty (0 bytes); pass a file with data, or re-download it")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise _err(f"cannot read data file {path} ({_one_line(err)}); check its permissions") from None


def _read_utf8(path: Path) -> str:
    """Decode as UTF-8 ourselves so a bad byte is reported with its offset and line, not as a parser crash."""
    data = _read_bytes(path)
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # skip the BOM that spreadsheet exports add
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        line = data.count(b"\n", 0, offset) + 1
        raise _err(
            f"{path} is not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset}, line {line}); "
            f"re-encode it to UTF-8, e.g. iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8{path.suffix}"
        ) from None


def _parse_uci(text: str, path: Path, *, pandas_quoting: bool) -> pd.DataFrame:
    """Parse the UCI TSV ``label<TAB>text`` (no header) into columns text, label."""
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
            raise _err(
                f"{path} is not a valid UCI TSV file ({_one_line(err)}); expected lines of 'label<TAB>text'"
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


def _parse_delimited(text: str, path: Path, fmt: str) -> pd.DataFrame:
    # dtype=str and no NA parsing: a message "NA" or "null" is text, and labels like 0/1 stay exact
    # strings; empty fields become "" and are dropped (texts) or reported (labels) later.
    try:
        return pd.read_csv(io.StringIO(text), sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except pd.errors.ParserError as err:
        other = "tsv" if fmt == "csv" else "csv"
        raise _err(
            f"{path} is not a valid {fmt.upper()} file with a header row ({_one_line(err)}); "
            f"check its delimiter and quoting, or set data.format={other} (or uci for a headerless label<TAB>text file)"
        ) from None


def _parse_json(text: str, path: Path) -> pd.DataFrame:
    """JSON lines (one object per line); a file holding one JSON array of objects is accepted too."""
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise _err(f"{path} is not valid JSON (line {err.lineno}: {err.msg}); fix it or write JSON lines") from None
        numbered: Iterable[tuple[int, Any]] = enumerate(records, start=1)
        unit = "item"
    else:
        numbered = []
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise _err(
                        f"{path} line {number} is not valid JSON ({err.msg}); "
                        'expected JSON lines: one object like {"text": ..., "label": ...} per line'
                    ) from None
        unit = "line"
    rows = []
    for number, record in numbered:
        if not isinstance(record, dict):
            raise _err(
                f"{path} {unit} {number} is a {type(record).__name__}, not a JSON object; write one object per row"
            )
        rows.append(record)
    return pd.DataFrame(rows)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (ValueError, OSError, TypeError) as err:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise _err(
            f"{path} is not a readable parquet file ({_one_line(err)}); "
            "re-export it, or set data.format to its real format"
        ) from None


def _read_hub(cfg: DataConfig) -> pd.DataFrame:
    try:
        ds = datasets.load_dataset(cfg.hub_name, split=cfg.hub_split)
    except Exception as err:  # network, auth, unknown dataset or split: all user-fixable here
        raise _err(
            f"could not load the Hugging Face dataset {cfg.hub_name!r} split {cfg.hub_split!r} "
            f"({type(err).__name__}: {_one_line(err)}); check data.hub_name and data.hub_split and the network, "
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
        raise _err(
            f"the Hugging Face dataset {cfg.hub_name!r} split {cfg.hub_split!r} has no rows; check data.hub_split"
        )
    return _select_columns(df, cfg, f"hub dataset {cfg.hub_name!r}")


_COLUMN_HINTS = {
    "text_column": ("text", "sms", "message", "msg", "body", "content", "sentence", "v2"),
    "label_column": ("label", "labels", "class", "category", "target", "y", "v1"),
}


def _select_columns(raw: pd.DataFrame, cfg: DataConfig, where: str) -> pd.DataFrame:
    """Pick the configured text and label columns and name them ``text`` and ``label``."""
    if cfg.text_column == cfg.label_column:
        raise _err(f"data.text_column and data.label_column are both {cfg.text_column!r}; set them to two columns")
    columns = [str(c) for c in raw.columns]
    wanted = {"text_column": cfg.text_column, "label_column": cfg.label_column}
    for key, column in wanted.items():
        if column not in columns:
            other = wanted["label_column" if key == "text_column" else "text_column"]
            candidates = [c for c in columns if c != other]
            hinted = [c for c in candidates if c.strip().lower() in _COLUMN_HINTS[key]]
            guess = hinted[0] if hinted else candidates[0] if len(candidates) == 1 else "NAME"
            found = ", ".join(repr(c) for c in columns) or "none"
            what = "texts" if key == "text_column" else "labels"
            raise _err(
                f"{where} has no column {column!r} (columns found: {found}); "
                f"set data.{key}={guess} to the column that holds the {what}"
            )
    raw = raw.set_axis(columns, axis=1)
    return pd.DataFrame({"text": raw[cfg.text_column], "label": raw[cfg.label_column]}).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Cleaning and labels


def _prepare(df: pd.DataFrame, cfg: DataConfig, where: str) -> tuple[pd.DataFrame, int]:
    """Drop empty texts, then map raw labels to ids: columns ``text`` (str) and ``label`` (int)."""
    df, dropped = _drop_empty_texts(df)
    if df.empty:
        # Typically the wrong column or format (e.g. a CSV read as the UCI TSV), not really empty data.
        raise _err(f"{where}: all {dropped} texts are empty; check data.format and data.text_column")
    if dropped:
        logger.info("%s: dropped %d empty text(s)", where, dropped)
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
        raise _err(_unknown_labels_message(keys[unknown], keys, cfg, where))
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
    numeric = key.lstrip("-").isdigit()
    return (not numeric, int(key) if numeric else 0, key)


def _unknown_labels_message(bad: pd.Series, keys: pd.Series, cfg: DataConfig, where: str) -> str:
    n_missing = int(bad.isna().sum())
    counts = bad.dropna().value_counts()
    entries = [f"{value!r} ({n} row{'s' if n != 1 else ''})" for value, n in counts.head(5).items()]
    if n_missing:
        entries.append(f"missing ({n_missing} row{'s' if n_missing != 1 else ''})")
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    lookup = {str(k).strip() for k in cfg.labels}
    found = sorted(set(keys.dropna()), key=_natural_key)
    if not lookup & set(found):
        # Nothing matches: most likely other names (or numbers) for the classes; suggest ids in order.
        suggestion = {k: str(i) for i, k in enumerate(found[:10])}
    else:
        suggestion = {str(k): str(v) for k, v in cfg.labels.items()} | {str(k): "ID" for k in counts.head(5).index}
    example = "{" + ", ".join(f"{_yaml_key(k)}: {v}" for k, v in suggestion.items()) + "}"
    tail = "; rows with a missing label must be labeled or removed" if n_missing else ""
    return (
        f"{where}: label value(s) not in data.labels: {', '.join(entries)}{more}; "
        f"map every raw label to a class id (0..K-1), e.g. data.labels={example}{tail}"
    )


# ---------------------------------------------------------------------------------------------
# Balancing and splitting


def load_splits(cfg: DataConfig) -> tuple[datasets.DatasetDict, DataSummary]:
    """Read, clean, label, (dedupe,) balance and split the data as configured."""
    raw, source = read_table(cfg)
    rows_read = len(raw)
    logger.info("read %d rows from %s", rows_read, source)
    df, dropped_empty = _prepare(raw, cfg, source)

    dropped_duplicates = 0
    if cfg.dedupe:
        duplicated = df["text"].duplicated(keep="first")
        dropped_duplicates = int(duplicated.sum())
        df = df.loc[~duplicated].reset_index(drop=True)
        logger.info("dropped %d duplicate text(s)", dropped_duplicates)

    names = cfg.id2label
    counts = np.bincount(df["label"].to_numpy(), minlength=len(names))
    class_counts_raw = {names[i]: int(n) for i, n in enumerate(counts)}
    short = {name: n for name, n in class_counts_raw.items() if n < MIN_ROWS_PER_CLASS}
    if short:
        raise _err(
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
                raise _err(
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
        raise _err(
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
        raise _err(f"too few rows for a stratified split ({_one_line(err)}); add data or change data.split") from None
    return datasets.DatasetDict({"train": second["train"], "validation": second["test"], "test": first["test"]})


def _class_weights(train_counts: np.ndarray) -> list[float]:
    """Inverse class frequency on train, scaled so the mean weight over classes is 1."""
    inverse = 1.0 / train_counts.astype(float)
    return [float(w) for w in inverse * len(inverse) / inverse.sum()]


# ---------------------------------------------------------------------------------------------
# Writing


def write_split_csvs(splits: datasets.DatasetDict, out_dir: Path) -> dict[str, Path]:
    """Write each split as ``out_dir/<split>.csv`` (text, label name, label_id), atomically per file.

    They read back with :func:`read_labeled_file` given ``data.text_column=text`` and
    ``data.label_column=label`` (the defaults) and the run's ``data.labels``.
    """
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    for name, ds in splits.items():
        ids = [int(i) for i in ds["label"]]
        feature = ds.features["label"]
        labels = feature.int2str(ids) if isinstance(feature, datasets.ClassLabel) else [str(i) for i in ids]
        frame = pd.DataFrame({"text": list(ds["text"]), "label": labels, "label_id": ids})
        target = out_dir / f"{name}.csv"
        try:
            write_atomic(target, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        except OSError as err:
            raise _err(f"cannot write {target} ({_one_line(err)}); check that output.dir is writable") from None
        paths[name] = target
    return paths
