"""Multi-label end to end: ``accelerate launch train.py`` on a generated set, then predict (texts and a file),
``transformers.pipeline``, the HTTP server and its page, and ``push --dry-run``, all on the saved model."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from tests.conftest import tiny_overrides
from tests.multilabel_data import LABELS, multilabel_overrides, write_multilabel_jsonl
from tests.serve.conftest import running
from tests.test_train_e2e import run_launcher

CONFIG = "configs/multilabel_smoke.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("multilabel")
    data = write_multilabel_jsonl(tmp / "toy.jsonl", 240)
    overrides = tiny_overrides(data, tmp / "run", tmp / "cache", **{"training.num_train_epochs": 4})
    overrides += [*multilabel_overrides(data), "evaluation.baseline=true", "data.balance=class_weights"]
    overrides = [o for o in overrides if not o.startswith("data.format=uci")]
    proc = run_launcher(["train.py", "--config", CONFIG, *overrides])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def test_training_reports_multi_label_metrics(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    test = metrics["test"]
    for key in ("f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
        assert 0.0 <= test[key] <= 1.0, key
    assert set(test["per_label"]) == set(LABELS)
    assert sum(v["support"] for v in test["per_label"].values()) == sum(
        metrics["data"]["split_class_counts"]["test"].values()
    )
    # The toy labels are keywords: the model learns them (a random scorer's ROC-AUC is 0.5).
    assert np.mean([v["roc_auc"] for v in test["per_label"].values()]) > 0.6
    assert set(metrics["baseline"]["test"]["per_label"]) == set(LABELS)
    assert metrics["baseline"]["model"].endswith("one-vs-rest")
    assert set(metrics["threshold"]["values"]) == set(LABELS) and metrics["threshold"]["chosen_on"] == "validation"
    assert len(metrics["data"]["class_weights"]) == len(LABELS)  # per-label positive weights were used
    history = metrics["history"]
    assert history[-1]["validation_loss"] < history[0]["validation_loss"]
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Per label (test)" in report and "Hamming loss" in report
    assert (run_dir / "plots" / "per_label_f1.png").stat().st_size > 0
    table = pd.read_csv(run_dir / "predictions" / "test.csv", keep_default_na=False)
    assert list(table.columns) == ["text", "label", "predicted", *(f"p_{n}" for n in LABELS)]


def test_the_saved_model_carries_problem_type_labels_and_thresholds(run_dir: Path):
    config = json.loads((run_dir / "model" / "config.json").read_text(encoding="utf-8"))
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {str(i): n for i, n in enumerate(LABELS)}
    meta = json.loads((run_dir / "model" / "spam_tune.json").read_text(encoding="utf-8"))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert meta["label_thresholds"] == metrics["threshold"]["values"]


def test_transformers_pipeline_returns_every_label_with_its_sigmoid(run_dir: Path):
    from transformers import pipeline

    from pipeline.serve.classifier import Classifier

    text = "you filthy idiot"
    scores = pipeline("text-classification", model=str(run_dir / "model"), top_k=None, device="cpu")([text])[0]
    assert {s["label"] for s in scores} == set(LABELS)
    ours = Classifier(run_dir / "model").predict([text])[0].probabilities
    assert {s["label"]: s["score"] for s in scores} == pytest.approx(ours, abs=1e-5)
    assert sum(ours.values()) != pytest.approx(1.0, abs=1e-3)  # sigmoids, not a softmax


def test_predict_texts_gives_the_label_set_by_the_saved_thresholds(run_dir: Path, capsys):
    assert main(["predict", str(run_dir / "model"), "you filthy idiot", "see you at lunch"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    meta = json.loads((run_dir / "model" / "spam_tune.json").read_text(encoding="utf-8"))
    for row in rows:
        expected = [n for n in LABELS if row["probabilities"][n] >= meta["label_thresholds"][n]]
        assert row["labels"] == expected


def test_predict_file_writes_the_set_and_a_probability_per_label(run_dir: Path, tmp_path: Path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["garbage clown", "thanks for lunch", "i will destroy you"]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    assert main(["predict", str(run_dir / "model"), "--file", str(src), "--out", str(out)]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["text", "label", *(f"p_{n}" for n in LABELS)]
    meta = json.loads((run_dir / "model" / "spam_tune.json").read_text(encoding="utf-8"))
    for _, row in table.iterrows():
        expected = "|".join(n for n in LABELS if row[f"p_{n}"] >= meta["label_thresholds"][n])
        assert row["label"] == expected


def test_http_predict_info_and_page(run_dir: Path):
    from pipeline.serve.app import create_app
    from pipeline.serve.classifier import Classifier

    classifier = Classifier(run_dir / "model")
    with running(create_app(classifier)) as url:
        answer = httpx.post(f"{url}/predict", json={"inputs": "you filthy idiot"}, timeout=30).json()
        assert {a["label"] for a in answer} == set(LABELS)
        probabilities = classifier.predict(["you filthy idiot"])[0]
        assert {a["label"]: a["score"] for a in answer} == pytest.approx(probabilities.probabilities, abs=1e-5)
        decided = probabilities.labels
        assert [a["label"] for a in answer[: len(decided)]] == sorted(
            decided, key=lambda n: -probabilities.probabilities[n]
        )
        raw = httpx.post(f"{url}/predict", json={"inputs": ["x"], "raw_scores": True}, timeout=30).json()[0]
        logits = dict(zip(LABELS, classifier.logits(["x"])[0].tolist(), strict=True))
        assert {a["label"]: a["score"] for a in raw} == pytest.approx(logits, abs=1e-5)
        top = httpx.post(f"{url}/", json={"inputs": "x", "parameters": {"top_k": 1}}, timeout=30).json()
        assert len(top) == 1
        info = httpx.get(f"{url}/info", timeout=30).json()
        assert info["problem_type"] == "multi_label_classification" and set(info["label_thresholds"]) == set(LABELS)
        page = httpx.get(f"{url}/", timeout=30).text
        assert "Which labels apply?" in page and "label_thresholds" in page


def test_push_dry_run_card_describes_the_labels(run_dir: Path, tmp_path: Path):
    out = tmp_path / "dry"
    assert main(["push", str(run_dir), "--repo-id", "alice/toxic-tiny", "--dry-run", str(out)]) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "multi-label" in card and all(f"`{n}`" in card for n in LABELS)
    assert "top_k=None" in card and "Micro F1" in card
