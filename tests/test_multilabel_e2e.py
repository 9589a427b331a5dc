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
from tests.conftest import tiny_overrides, wait_for
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


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_evaluate_a_multi_label_run_on_its_test_split(run_dir: Path, capsys):
    from tests.test_evaluation import assert_png

    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "multi-label: toxic >= " in out and "TF-IDF baseline" in out and "hamming_loss" in out
    result_dir = run_dir / "eval" / "test"
    result, trained = read_json(result_dir / "metrics.json"), read_json(run_dir / "metrics.json")
    # Same model, same rows, the thresholds saved with the model: the numbers training reported for test.
    assert result["problem_type"] == "multi_label_classification"
    assert result["label_thresholds"] == read_json(run_dir / "model" / "spam_tune.json")["label_thresholds"]
    assert result["rows"] == trained["test"]["rows"]
    for key in ("f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
        assert result["metrics"][key] == pytest.approx(trained["test"][key]), key
    for name in LABELS:
        assert result["metrics"]["per_label"][name] == pytest.approx(trained["test"]["per_label"][name]), name
        baseline = result["baseline"]["metrics"]["per_label"][name]
        assert baseline == pytest.approx(trained["baseline"]["test"]["per_label"][name]), name
    assert result["baseline"]["model"].endswith("one-vs-rest")
    table = pd.read_csv(result_dir / "predictions.csv", keep_default_na=False)
    assert list(table.columns) == ["text", "label", "predicted", *(f"p_{n}" for n in LABELS)]
    assert len(table) == result["rows"]
    report = (result_dir / "report.md").read_text(encoding="utf-8")
    assert "## Per label (test)" in report and "| test | TF-IDF baseline |" in report
    assert "(plots/per_label_f1.png)" in report
    assert_png(result_dir / "plots" / "per_label_f1.png")
    # Evaluating again replaces the earlier output.
    assert main(["evaluate", str(run_dir / "model"), "--split", "test"]) == 0
    assert sorted(p.name for p in (run_dir / "eval").iterdir()) == ["test"]


def write_rows_csv(path: Path, rows: list[tuple[str, list[str]]], separator: str) -> Path:
    frame = pd.DataFrame({"text": [t for t, _ in rows], "labels": [separator.join(ls) for _, ls in rows]})
    path.write_text(frame.to_csv(index=False), encoding="utf-8")
    return path


def test_evaluate_reads_other_separators_and_flag_columns_with_the_readers_options(
    run_dir: Path, tmp_path: Path, capsys
):
    from tests.multilabel_data import toy_label_sets, write_flag_columns_csv

    rows = toy_label_sets(40, seed=7)
    data = write_rows_csv(tmp_path / "semicolons.csv", rows, ";")
    command = ["evaluate", str(run_dir), "--data", str(data), "--out", str(tmp_path / "semi")]
    assert main(command) == 2  # 'toxic;insult' is no label of the model
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "not among the model's labels" in err and "data.label_separator='|'" in err, err
    assert not (tmp_path / "semi").exists()
    assert main([*command, "data.label_separator=;"]) == 0
    semi = read_json(tmp_path / "semi" / "metrics.json")
    assert semi["rows"] == len(rows)
    assert {n: v["support"] for n, v in semi["metrics"]["per_label"].items()} == {
        n: sum(n in labels for _, labels in rows) for n in LABELS
    }
    scored = pd.read_csv(tmp_path / "semi" / "predictions.csv", keep_default_na=False)
    assert scored["label"].tolist() == [";".join(labels) for _, labels in rows]  # written as read

    # One 0/1 column per label, in any order: the same rows, the same numbers.
    flags = write_flag_columns_csv(tmp_path / "flags.csv", 40)
    reordered = pd.read_csv(flags)[["threat", "text", "insult", "toxic"]]
    reordered.to_csv(flags, index=False)
    out = tmp_path / "flags-eval"
    args = [
        "evaluate",
        str(run_dir),
        "--data",
        str(flags),
        "--out",
        str(out),
        "data.label_columns=[threat,insult,toxic]",
    ]
    assert main(args) == 0
    same = read_json(out / "metrics.json")
    plain = write_rows_csv(tmp_path / "plain.csv", toy_label_sets(40), "|")
    assert main(["evaluate", str(run_dir), "--data", str(plain), "--out", str(tmp_path / "plain")]) == 0
    assert same["metrics"] == read_json(tmp_path / "plain" / "metrics.json")["metrics"]
    # Columns that are not the model's labels: one line naming them, nothing written.
    assert main([*args[:-1], "data.label_columns=[threat,insult]", "--out", str(tmp_path / "bad")]) == 2
    assert "one 0/1 column per label of the model (toxic, insult, threat)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_evaluate_a_standalone_multi_label_model_on_a_file_with_other_columns(run_dir: Path, tmp_path: Path):
    import shutil

    from tests.multilabel_data import toy_label_sets

    model = shutil.copytree(run_dir / "model", tmp_path / "exported")
    rows = toy_label_sets(16, seed=3)
    data = tmp_path / "new.jsonl"
    data.write_text("".join(json.dumps({"msg": t, "tags": ls}) + "\n" for t, ls in rows), encoding="utf-8")
    args = ["evaluate", str(model), "--data", str(data), "--text-column", "msg", "--label-column", "tags"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    result = read_json(tmp_path / "out" / "metrics.json")
    assert result["rows"] == len(rows) and set(result["metrics"]["per_label"]) == set(LABELS)
    assert "baseline" not in result  # no run, no train split to fit it on


def test_onnx_export_serves_the_same_sigmoids_and_label_sets(run_dir: Path, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from pipeline.serve.classifier import Classifier

    out = tmp_path / "onnx"
    assert main(["export", str(run_dir / "model"), "--onnx", "--out", str(out)]) == 0
    texts = ["you filthy idiot", "see you at lunch", "i will destroy you, garbage clown", "ok"]
    torch_side, onnx_side = Classifier(out, device="cpu"), Classifier(out, backend="onnxruntime")
    assert onnx_side.multi_label and onnx_side.model is None  # no torch weights loaded
    expected = torch_side.probabilities(texts).numpy()
    np.testing.assert_allclose(onnx_side.probabilities(texts).numpy(), expected, rtol=0, atol=1e-5)
    assert not np.allclose(expected.sum(axis=1), 1.0)  # one sigmoid per label, not a softmax over labels
    assert [p.labels for p in onnx_side.predict(texts)] == [p.labels for p in torch_side.predict(texts)]


def test_search_optimises_a_multi_label_validation_metric(tmp_path: Path, capsys):
    pytest.importorskip("optuna")
    data = write_multilabel_jsonl(tmp_path / "toy.jsonl", 160)
    overrides = tiny_overrides(data, tmp_path / "run", tmp_path / "cache", **{"training.num_train_epochs": 1})
    overrides = [o for o in [*overrides, *multilabel_overrides(data)] if not o.startswith("data.format=uci")]
    out = tmp_path / "search.json"
    argv = ["search", "--config", CONFIG, *overrides, "--trials", "2", "--epochs", "1", "2", "--out", str(out)]
    assert main([*argv, "--metric", "macro_f1"]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["metric"] == "validation macro_f1" and result["direction"] == "maximize"
    assert all(0.0 <= t["value"] <= 1.0 for t in result["trials"])
    assert result["best"]["value"] == max(t["value"] for t in result["trials"])
    assert main([*argv, "--trials", "1", "--metric", "hamming_loss"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["direction"] == "minimize"
    capsys.readouterr()
    assert main([*argv, "--metric", "auc"]) != 0
    assert "--metric must be one of loss, f1, accuracy" in capsys.readouterr().err


def test_the_page_in_a_browser_names_the_label_set(run_dir: Path, browser):
    from selenium.webdriver.common.by import By

    from pipeline.serve.app import create_app
    from pipeline.serve.classifier import Classifier

    classifier = Classifier(run_dir / "model")
    text = "you filthy idiot, i will destroy you"
    with running(create_app(classifier)) as url:
        browser.get(url + "/")
        wait_for(browser, lambda d: d.find_element(By.ID, "heading").text == "Which labels apply?")
        assert browser.title == "spam-tune: which labels apply?"
        assert "every label at or above its threshold" in browser.find_element(By.ID, "model-line").text
        answer = httpx.post(f"{url}/predict", json={"inputs": text}, timeout=30).json()
        browser.find_element(By.ID, "message").send_keys(text)
        browser.find_element(By.ID, "classify").click()
        wait_for(browser, lambda d: d.find_element(By.ID, "result").is_displayed())
        thresholds = httpx.get(f"{url}/info", timeout=30).json()["label_thresholds"]
        shown = [a["label"] for a in answer if a["score"] >= thresholds[a["label"]]]
        assert set(shown) == set(classifier.predict([text])[0].labels)  # the page decides as the model does
        # textContent: the label is shown upper-cased by CSS, the text itself is the label names.
        assert browser.find_element(By.ID, "label").get_attribute("textContent") == (", ".join(shown) or "no label")
        rows = browser.find_elements(By.CSS_SELECTOR, "#scores tr")
        assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [a["label"] for a in answer]
