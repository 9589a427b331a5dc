"""Fuzzing with ``hypothesis``: random and near-valid inputs never end in a traceback.

Every reader (UCI, CSV, TSV, JSON lines, parquet) gets random bytes and near-valid files (encodings, BOMs, CRLF,
quotes, NaN, empty and 1 MB fields); ``load_config`` gets random ``key=value`` overrides; ``Classifier.predict``
gets random Unicode (empty, whitespace, lone surrogates, very long). Each call either succeeds or raises a
:class:`~pipeline.errors.SpamTuneError` whose message is one line; anything else fails the test with the input
that caused it. The number of generated cases is printed in pytest's terminal summary.

HTTP bodies: random bytes, random JSON and near-valid ``/predict`` requests go to the real server through a socket
on 127.0.0.1: zero 500s, every refusal a 4xx with a one-line JSON error.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import RunConfig, config_keys, load_config
from pipeline.data.readers import read_labeled_file
from pipeline.errors import SpamTuneError

FAST = settings(
    deadline=None,  # a shared CI machine's pauses are not failures
    database=None,  # no .hypothesis/ folder in the repo
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FORMATS = ["uci", "csv", "tsv", "jsonl", "parquet"]
ENCODINGS = ["utf-8", "latin-1", "utf-16", "cp1252"]
LABELS = ["ham", "spam", "", " spam", "HAM", "nan", "NaN", "None", "null", "0", "1", "2", "-1", "1.0", "spam\n"]
MEGABYTE = "x" * (1 << 20)

# Text with what breaks parsers: delimiters, quotes, line breaks, NUL, BOMs, lone surrogates, any script.
tricky_chars = st.sampled_from([",", "\t", '"', "'", "\r", "\n", "\r\n", "\x00", "\ufeff", "\\", "\ud800", " "])
texts = st.lists(st.one_of(st.characters(codec=None), tricky_chars), max_size=40).map("".join)


class Outcome:
    """Counts cases and checks the contract: a result, or a one-line SpamTuneError."""

    def __init__(self, counter: Counter, name: str) -> None:
        self.counter, self.name = counter, name

    def check(self, call, *args, **kwargs):
        self.counter[self.name] += 1
        try:
            return call(*args, **kwargs)
        except SpamTuneError as err:
            assert "\n" not in str(err) and str(err).strip(), repr(str(err))
            return None


_CASE_NUMBERS = itertools.count()


def _numbered(folder: Path, suffix: str) -> Path:
    return folder / f"case{next(_CASE_NUMBERS)}{suffix}"  # one file per example: tmp_path is shared by them


def data_config(fmt: str, encoding: str = "utf-8", header: bool = True) -> RunConfig | None:
    columns = [] if header else ["data.text_column=1", "data.label_column=0"]
    try:
        return load_config(None, [f"data.format={fmt}", f"data.encoding={encoding}", f"data.header={header}", *columns])
    except SpamTuneError:
        return None  # e.g. header=false for jsonl: refused by the config, which is the contract too


def read(outcome: Outcome, folder: Path, payload: bytes, fmt: str, encoding: str = "utf-8", header: bool = True):
    cfg = data_config(fmt, encoding, header)
    if cfg is None:
        return None
    path = _numbered(folder, {"uci": "", "jsonl": ".jsonl"}.get(fmt, f".{fmt}"))
    path.write_bytes(payload)
    return outcome.check(read_labeled_file, cfg.data, str(path), fmt)


@settings(FAST, max_examples=150)
@given(
    payload=st.binary(max_size=600),
    fmt=st.sampled_from(FORMATS),
    encoding=st.sampled_from(ENCODINGS),
    header=st.booleans(),
)
def test_fuzz_random_bytes_for_every_reader(tmp_path: Path, fuzz_cases: Counter, payload, fmt, encoding, header):
    read(Outcome(fuzz_cases, "reader: random bytes"), tmp_path, payload, fmt, encoding, header)


@st.composite
def delimited_files(draw) -> tuple[bytes, str, str, bool]:
    """A CSV/TSV or UCI file that is nearly right: quoted or not, BOM, CRLF, NaN, empty and 1 MB fields."""
    fmt = draw(st.sampled_from(["csv", "tsv", "uci"]))
    header = fmt == "uci" or draw(st.booleans())
    rows = draw(st.lists(st.tuples(st.one_of(st.sampled_from(LABELS), texts), texts), max_size=12))
    if rows and draw(st.integers(0, 15)) == 0:
        rows[0] = (rows[0][0], MEGABYTE)  # one huge field now and then
    if fmt == "uci":
        body = "".join(f"{label}\t{text}\n" for label, text in rows)
    elif draw(st.booleans()):  # proper quoting, as a spreadsheet writes it
        buf = io.StringIO()
        writer = csv.writer(
            buf, delimiter="," if fmt == "csv" else "\t", lineterminator=draw(st.sampled_from(["\n", "\r\n"]))
        )
        writer.writerows(([("label", "text")] if header else []) + rows)
        body = buf.getvalue()
    else:  # hand-made: stray quotes, missing fields, ragged rows
        sep = "," if fmt == "csv" else "\t"
        lines = ([f"label{sep}text"] if header else []) + [sep.join(r[: draw(st.integers(0, 2))]) for r in rows]
        body = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    encoding = draw(st.sampled_from(ENCODINGS))
    payload = body.encode(encoding, errors="replace")
    if encoding == "utf-8" and draw(st.booleans()):
        payload = b"\xef\xbb\xbf" + payload
    return payload, fmt, encoding, header


@settings(FAST, max_examples=150)
@given(file=delimited_files())
def test_fuzz_near_valid_csv_tsv_and_uci_files(tmp_path: Path, fuzz_cases: Counter, file):
    payload, fmt, encoding, header = file
    read(Outcome(fuzz_cases, "reader: near-valid CSV/TSV/UCI"), tmp_path, payload, fmt, encoding, header)


values = st.one_of(
    st.none(),
    texts,
    st.sampled_from(LABELS),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@settings(FAST, max_examples=100)
@given(
    records=st.lists(st.dictionaries(st.sampled_from(["text", "label", "other"]), values, max_size=3), max_size=8),
    as_array=st.booleans(),
    garbage=st.one_of(st.none(), st.sampled_from(["{", "[1,", "nan", '"text"', '{"text": }', "\x00"])),
)
def test_fuzz_json_lines(tmp_path: Path, fuzz_cases: Counter, records, as_array, garbage):
    lines = [json.dumps(r) for r in records]  # NaN and Infinity as Python writes them
    if garbage is not None:
        lines.insert(len(lines) // 2, garbage)
    body = ("[" + ",".join(lines) + "]") if as_array else "\n".join(lines)
    read(Outcome(fuzz_cases, "reader: JSON lines"), tmp_path, body.encode("utf-8"), "jsonl")


@settings(FAST, max_examples=40)
@given(
    text=st.lists(st.one_of(st.none(), texts, st.just(math.nan)), max_size=6),
    label=st.lists(st.one_of(st.none(), st.sampled_from(LABELS), st.integers(-1, 2), st.just(math.nan)), max_size=6),
    text_name=st.sampled_from(["text", "message", "label"]),
)
def test_fuzz_parquet(tmp_path: Path, fuzz_cases: Counter, text, label, text_name):
    size = min(len(text), len(label))
    frame = pd.DataFrame(
        {text_name: pd.Series(text[:size], dtype=object), "label": pd.Series(label[:size], dtype=object)}
    )
    buf = io.BytesIO()
    try:
        frame.to_parquet(buf)
    except Exception:  # pyarrow cannot store every mix of types: not our reader's case
        return
    read(Outcome(fuzz_cases, "reader: parquet"), tmp_path, buf.getvalue(), "parquet")


KEYS = [key for key, _, _ in config_keys()]
override_values = st.one_of(
    texts,
    st.sampled_from(
        [
            "",
            "null",
            "true",
            "no",
            "1",
            "-1",
            "0",
            "1e-4",
            "1e999",
            "nan",
            "[]",
            "[1, 2]",
            "[",
            "{a: 1}",
            "{",
            "'x",
            "ham",
            "all-linear",
            "{ham: 0, spam: 1}",
            "{model_type: gpt2}",
            "[0.5, 0.5]",
            "!!python/object:os.system",
        ]
    ),
)


@settings(FAST, max_examples=300)
@given(
    items=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(KEYS), override_values).map(lambda kv: f"{kv[0]}={kv[1]}"),
            texts,  # anything at all, e.g. no '=' or an empty key
        ),
        max_size=3,
    )
)
def test_fuzz_config_overrides(fuzz_cases: Counter, items):
    cfg = Outcome(fuzz_cases, "config: key=value overrides").check(load_config, None, items)
    assert cfg is None or isinstance(cfg, RunConfig)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from pipeline.data.tokenize import bundled_gpt2_tokenizer, with_pad_token
    from pipeline.export.folder import write_model_folder
    from pipeline.export.metadata import ModelMetadata
    from pipeline.serve.classifier import Classifier
    from tests.conftest import TINY_GPT2

    tokenizer = with_pad_token(bundled_gpt2_tokenizer())
    config = AutoConfig.for_model(**TINY_GPT2, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForSequenceClassification.from_config(config)
    folder = write_model_folder(
        tmp_path_factory.mktemp("fuzz") / "model",
        save_weights=model.save_pretrained,
        tokenizer=tokenizer,
        metadata=ModelMetadata(id2label={0: "ham", 1: "spam"}, max_length=32, pad_token_id=tokenizer.pad_token_id),
        card="tiny",
    )
    return Classifier(folder, batch_size=4)


@settings(FAST, max_examples=60)
@given(
    batch=st.lists(
        st.one_of(texts, st.sampled_from(["", " ", "\n\t ", "\u3000", "\ud800", "a" * 20_000, "WIN " * 3000])),
        max_size=6,
    )
)
def test_fuzz_predict_inputs(classifier, fuzz_cases: Counter, batch):
    predictions = Outcome(fuzz_cases, "predict: texts").check(classifier.predict, batch)
    if predictions is not None:
        assert [p.text for p in predictions] == batch
        assert all(abs(sum(p.probabilities.values()) - 1) < 1e-4 for p in predictions)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
near_valid_requests = st.fixed_dictionaries(
    {"inputs": st.one_of(texts, st.lists(st.one_of(texts, st.lists(texts, max_size=2), json_values), max_size=5))},
    optional={
        "raw_scores": json_values,
        "truncate": st.one_of(st.booleans(), json_values),
        "parameters": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "top_k": st.one_of(st.integers(-2, 5), json_values),
                    "function_to_apply": st.sampled_from(["softmax", "sigmoid", "none", "relu", ""]),
                },
            ),
            json_values,
        ),
        "extra": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_valid_requests.map(lambda v: json.dumps(v).encode()),
)


@pytest.fixture(scope="module")
def server_url(classifier):
    from pipeline.serve.app import create_app
    from pipeline.serve.settings import ServeSettings
    from tests.serve.conftest import running

    settings = ServeSettings(max_input_chars=2_000, max_inputs_per_request=8, max_body_bytes=50_000, max_queue=64)
    with running(create_app(classifier, settings)) as url:
        yield url


@settings(FAST, max_examples=120)
@given(
    body=bodies,
    route=st.sampled_from(["/predict", "/"]),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]),
)
def test_fuzz_http_bodies(server_url, fuzz_cases: Counter, body, route, content_type):
    import httpx

    fuzz_cases["http: request bodies"] += 1
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.post(server_url + route, content=body, headers=headers, timeout=30)
    assert response.status_code != 500 and response.status_code < 600, (body, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error.strip() and "\n" not in error, error
