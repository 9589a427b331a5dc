"""Multi-label through LoRA and DDP: the smoke recipe with ``model.mode=lora`` on a named base (reloaded by the
Classifier, merged, read by ``transformers.pipeline``), and under ``accelerate launch --num_processes 2 --cpu``
with a LoRA adapter over a nameless (random init) base, whose folder ``transformers.pipeline`` reads directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pipeline.cli import main
from tests.conftest import TINY_GPT2, tiny_overrides
from tests.multilabel_data import LABELS, multilabel_overrides, write_multilabel_jsonl
from tests.test_train_e2e import run_launcher

CONFIG = "configs/multilabel_smoke.yaml"
TEXTS = ["you filthy idiot", "see you at lunch", "i will destroy you, garbage clown"]
LORA = ["model.mode=lora", "adapter.target_modules=[c_attn]", "training.learning_rate=5e-3"]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def overrides(root: Path, out: str, *extra: str) -> list[str]:
    data = root / "toy.jsonl"
    if not data.is_file():
        write_multilabel_jsonl(data, 160)
    values = tiny_overrides(data, root / out, root / "cache", **{"training.num_train_epochs": 3})
    values += [*multilabel_overrides(data), "data.balance=none", *extra]
    return [v for v in values if not v.startswith("data.format=uci")]


@pytest.fixture(scope="module")
def named_lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA over a saved tiny LM loaded by its path (a base with a name, so no ``base/`` in the adapter folder, and
    a config of its own without ``problem_type``)."""
    root = tmp_path_factory.mktemp("ml-lora")
    torch.manual_seed(0)
    values = {k: v for k, v in TINY_GPT2.items() if k != "model_type"}
    GPT2LMHeadModel(GPT2Config(**values, vocab_size=50257)).save_pretrained(root / "tiny-lm")
    args = overrides(root, "run", *LORA, "model.from_config=null", f"model.name_or_path={root / 'tiny-lm'}")
    assert main(["train", "--config", CONFIG, *args]) == 0  # model.from_config=null comes after the tiny one
    return root / "run"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_lora_adapter_reloads_as_a_multi_label_classifier(named_lora_run: Path):
    from pipeline.serve.classifier import Classifier

    folder = named_lora_run / "model"
    assert (folder / "adapter_config.json").is_file() and not (folder / "base").exists()
    meta = read_json(folder / "spam_tune.json")
    assert meta["mode"] == "lora" and meta["problem_type"] == "multi_label_classification"
    assert meta["base_model"] == str((named_lora_run.parent / "tiny-lm").resolve())
    classifier = Classifier(folder)
    # The base is rebuilt from its own config (no problem_type there); the model's problem_type is put back.
    assert classifier.model.config.problem_type == "multi_label_classification"
    logits = classifier.logits(TEXTS)
    probabilities = classifier.probabilities(TEXTS).numpy()
    np.testing.assert_allclose(probabilities, sigmoid(logits.astype(np.float64)), atol=1e-6)
    assert not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)  # sigmoids, not a softmax
    for prediction, row in zip(classifier.predict(TEXTS), probabilities, strict=True):
        assert prediction.labels == [n for j, n in enumerate(LABELS) if row[j] >= meta["label_thresholds"][n]]
    # The loss the reloaded model computes is BCE over the labels, as in training.
    batch = classifier.tokenizer(TEXTS, return_tensors="pt", padding=True)
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    with torch.no_grad():
        out = classifier.model(**batch, labels=targets)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets)
    torch.testing.assert_close(out.loss, bce)
    metrics = read_json(named_lora_run / "metrics.json")
    assert set(metrics["test"]["per_label"]) == set(LABELS) and 0.0 <= metrics["test"]["f1"] <= 1.0
    assert metrics["parameters"]["trainable"] < metrics["parameters"]["total"]  # adapters and head only


def test_merged_lora_model_gives_sigmoids_in_transformers_pipeline(named_lora_run: Path, tmp_path: Path):
    from transformers import pipeline

    from pipeline.serve.classifier import Classifier

    merged = tmp_path / "merged"
    assert main(["merge", str(named_lora_run), "--out", str(merged)]) == 0
    assert read_json(merged / "config.json")["problem_type"] == "multi_label_classification"
    expected = Classifier(named_lora_run / "model").predict(TEXTS)
    scores = pipeline("text-classification", model=str(merged), top_k=None, device="cpu")(TEXTS)
    for got, want in zip(scores, expected, strict=True):
        assert {s["label"]: s["score"] for s in got} == pytest.approx(want.probabilities, abs=1e-5)
    assert [p.labels for p in Classifier(merged).predict(TEXTS)] == [p.labels for p in expected]


def test_two_process_ddp_lora_run_writes_sane_multi_label_metrics(tmp_path: Path):
    from transformers import pipeline

    from pipeline.serve.classifier import Classifier

    # Two processes take half the steps per epoch: more epochs and a higher rate for the adapters to learn the set.
    faster = [*LORA, "training.learning_rate=1e-2", "training.num_train_epochs=6"]
    args = ["--num_processes", "2", "--cpu", "train.py", "--config", CONFIG, *overrides(tmp_path, "ddp", *faster)]
    proc = run_launcher(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    metrics = read_json(run / "metrics.json")
    assert metrics["training"]["processes"] == 2 and metrics["training"]["effective_batch_size"] == 32
    for split in ("validation", "test"):
        values = metrics[split]
        # Predictions gathered over both processes: every row once, none padded in or lost.
        assert values["rows"] == metrics["data"]["split_sizes"][split]
        supports = {n: v["support"] for n, v in values["per_label"].items()}
        assert supports == metrics["data"]["split_class_counts"][split]
        for key in ("f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
            assert 0.0 <= values[key] <= 1.0, (split, key)
    assert set(metrics["threshold"]["values"]) == set(LABELS)
    history = metrics["history"]
    assert history[-1]["validation_loss"] < history[0]["validation_loss"], history
    # The adapter folder (nameless base saved in base/) reads in transformers' pipeline as multi-label.
    folder = run / "model"
    assert (folder / "base" / "config.json").is_file()
    assert read_json(folder / "base" / "config.json")["problem_type"] == "multi_label_classification"
    scores = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")(TEXTS)
    for got, want in zip(scores, Classifier(folder).predict(TEXTS), strict=True):
        assert {s["label"]: s["score"] for s in got} == pytest.approx(want.probabilities, abs=1e-5)
