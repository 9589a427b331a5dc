"""bench/multilabel.py: a Debian package index becomes a multi-label set, and one seed trains on it (tiny GPT-2)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL_SETTINGS

REPO = Path(__file__).resolve().parents[1]

# Three stanzas as apt writes them: a continued Tag line, a package without tags, two packages sharing a description.
INDEX = """Package: 0ad
Version: 0.0.26-3
Tag: game::strategy, interface::x11, role::program,
 use::gameplaying, works-with::audio
Description: Real-time strategy game of ancient warfare
Description-md5: d943033bedada21853d2ae54a2578a7b

Package: untagged
Description: A package nobody tagged

Package: libfoo1
Tag: network::server, role::shared-lib
Description: foo protocol library

Package: libfoo-dev
Tag: devel::library, network::client, role::devel-lib
Description: foo protocol library

Package: docs-only
Tag: role::documentation
Description: documentation of nothing in particular
"""

WORDS = {"use::gameplaying": "game", "network::server": "server daemon", "works-with::audio": "audio sound"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_multilabel", REPO / "bench" / "multilabel.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_multilabel"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_multilabel", None)


def test_an_index_becomes_descriptions_with_their_chosen_tags(bench):
    tagged = bench.tagged_descriptions(bench.parse_stanzas(INDEX))
    assert (
        "Real-time strategy game of ancient warfare",
        {"game::strategy", "interface::x11", "role::program", "use::gameplaying", "works-with::audio"},
    ) in tagged
    assert all(text != "A package nobody tagged" for text, _ in tagged)
    labels = bench.most_frequent_tags(tagged, 3)
    # Only the use / works-with / network facets count (4 tags here); one package each, so ties go by name.
    assert labels == ["network::client", "network::server", "use::gameplaying"]
    rows = bench.debtags_rows(tagged, labels)
    assert rows == [
        {"text": "Real-time strategy game of ancient warfare", "labels": ["use::gameplaying"]},
        # One description, two packages: one row with the union of their tags; untagged / unlabelled rows dropped.
        {"text": "foo protocol library", "labels": ["network::client", "network::server"]},
    ]
    with pytest.raises(bench.BenchError, match="--labels"):
        bench.most_frequent_tags(tagged, 5)  # 4 tags in those facets


def synthetic_index(n: int) -> str:
    """``n`` packages whose descriptions name their tags' words, so a tiny model can learn something."""
    names = list(WORDS)
    stanzas = []
    for i in range(n):
        tags = [names[i % 3]] + ([names[(i + 1) % 3]] if i % 4 == 0 else [])
        words = " and ".join(WORDS[t] for t in tags)
        stanzas.append(f"Package: p{i}\nTag: role::program, {', '.join(tags)}\nDescription: {words} tool number {i}\n")
    return "\n".join(stanzas)


def test_one_seed_trains_and_writes_the_json_beside_the_tfidf_row(bench, tmp_path: Path, capsys):
    index = tmp_path / "Packages"
    index.write_text(synthetic_index(150), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--packages", str(index), "--labels", "3", "--config", "configs/multilabel_smoke.yaml", "--seeds", "0"]
    argv += ["--launcher", "python", "--device", "cpu", "--out-dir", str(out), "--runs-dir", str(tmp_path / "runs")]
    for key, value in {**TINY_MODEL_SETTINGS, "evaluation.epoch_train_rows": 0}.items():
        argv += ["--set", f"{key}={value}"]
    assert bench.main(argv) == 0

    rows = [json.loads(line) for line in (out / "debtags.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 150 and sum(len(r["labels"]) == 2 for r in rows) == 38
    result = json.loads((out / "multilabel-debtags-full.json").read_text(encoding="utf-8"))
    assert sorted(result["labels"]) == sorted(WORDS)
    (record,) = result["per_seed"]
    assert sum(record["split_sizes"].values()) == 150
    for numbers in (record["test"], record["baseline_test"]):
        assert set(numbers["per_label_f1"]) == set(result["labels"])
        assert 0.0 <= numbers["f1"] <= 1.0 and 0.0 <= numbers["hamming_loss"] <= 1.0
    # The words name the tags: the TF-IDF row finds them.
    assert record["baseline_test"]["f1"] > 0.9
    assert set(record["thresholds"]) == set(result["labels"])  # chosen per label on validation (best_f1)
    assert result["mean"]["f1"]["mean"] == record["test"]["f1"] and result["failed"] == []
    printed = capsys.readouterr().out
    assert "TF-IDF one-vs-rest" in printed and "per-label test F1" in printed


def test_a_missing_index_is_one_clear_error(bench, tmp_path: Path):
    with pytest.raises(bench.BenchError, match="not found"):
        bench.main(["--packages", str(tmp_path / "nope"), "--data-only", "--out-dir", str(tmp_path)])
