"""One tiny training run with threshold + baseline, then every artifact and the `evaluate` command on it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from huggingface_hub import ModelCard

from pipeline.cli import main
from pipeline.serve.classifier import Classifier
from tests.conftest import tiny_overrides, write_toy_data
from tests.test_evaluation import assert_png

PLOTS = ("loss", "accuracy", "confusion_matrix", "scores")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny run (threshold chosen for best F1, TF-IDF baseline on) shared by this module's tests."""
    root = tmp_path_factory.mktemp("eval")
    data = write_toy_data(root / "toy.tsv")
    extra = {
        "evaluation.baseline": True,
        "evaluation.threshold": "best_f1",
        "evaluation.epoch_train_rows": 32,
        "evaluation.splits": "[train,validation,test]",  # the book's three-row table (default: validation, test)
    }
    overrides = tiny_overrides(data, root / "run", root / "cache", **extra)
    assert main(["train", "--config", "configs/smoke.yaml", *overrides]) == 0
    return root / "run"


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_metrics_json_has_splits_baseline_threshold_and_history(trained: Path):
    metrics = read_json(trained / "metrics.json")
    for split in ("train", "validation", "test"):
        assert {"accuracy", "precision", "recall", "f1", "f1_macro", "roc_auc", "confusion_matrix"} <= set(
            metrics[split]
        )
        assert {"accuracy", "precision", "recall", "f1"} <= set(metrics["baseline"][split])
    assert metrics["baseline"]["model"].startswith("TF-IDF") and metrics["baseline"]["fit_seconds"] > 0
    threshold = metrics["threshold"]
    assert threshold["strategy"] == "best_f1" and threshold["chosen_on"] == "validation"
    assert 0 < threshold["value"] < 1 and threshold["test"]["accuracy"] >= 0.9
    history = metrics["history"]
    assert [row["epoch"] for row in history] == [1.0, 2.0]
    assert all({"train_loss", "train_accuracy", "validation_loss", "validation_accuracy"} <= set(r) for r in history)
    assert history[-1]["validation_loss"] < history[0]["validation_loss"]  # the toy set is learnable


def test_threshold_is_recorded_with_the_model_and_applied_by_the_classifier(trained: Path):
    value = read_json(trained / "metrics.json")["threshold"]["value"]
    meta = read_json(trained / "model" / "spam_tune.json")
    assert meta["threshold"] == value and meta["threshold_strategy"] == "best_f1" and meta["positive_label"] == 1
    classifier = Classifier(trained / "model")
    assert classifier.threshold == value
    labels = [p.label for p in classifier.predict(["URGENT you have won a cash award txt WIN to 80111", "sorry"])]
    assert labels == ["spam", "ham"]


def test_every_artifact_exists_and_pngs_are_valid(trained: Path):
    for name in ("report.md", "metrics.json", "environment.json", "model/README.md", "model/spam_tune.json"):
        assert (trained / name).stat().st_size > 0, name
    for name in PLOTS:
        assert_png(trained / "plots" / f"{name}.png")


def test_report_links_resolve_and_lists_baseline_mistakes_and_versions(trained: Path):
    report = (trained / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert sorted(links) == sorted(f"plots/{name}.png" for name in PLOTS)
    assert all((trained / link).is_file() for link in links)
    assert "| test | TF-IDF baseline | 24 |" in report and "| test | fine-tuned @ " in report
    assert "## Most confident mistakes (test, threshold " in report
    assert "| Split | ham | spam | Total |" in report and "| train | 42 | 42 | 84 |" in report
    assert re.search(r"\| transformers \| 5\.", report) and "| Training |" in report


def test_model_card_in_the_model_dir_parses(trained: Path):
    card = ModelCard.load(trained / "model" / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    assert card.data.license == "mit" and card.data.base_model is None  # random init: no base model
    assert "## Limitations" in card.text and "this model, threshold" in card.text


def test_evaluate_a_run_on_its_test_split(trained: Path, capsys):
    assert main(["evaluate", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "fine-tuned" in out and "TF-IDF baseline" in out and str(trained / "eval" / "test") in out
    result_dir = trained / "eval" / "test"
    result = read_json(result_dir / "metrics.json")
    run_metrics = read_json(trained / "metrics.json")
    # Same model, same rows, same recorded threshold as at the end of training: same decisions.
    assert result["metrics"]["confusion_matrix"] == run_metrics["threshold"]["test"]["confusion_matrix"]
    assert result["threshold"] == run_metrics["threshold"]["value"] and result["rows"] == 24
    assert result["baseline"]["metrics"]["accuracy"] == run_metrics["baseline"]["test"]["accuracy"]
    for name in ("report.md", "predictions.csv"):
        assert (result_dir / name).stat().st_size > 0
    assert_png(result_dir / "plots" / "confusion_matrix.png")
    assert_png(result_dir / "plots" / "scores.png")
    # Evaluating again replaces the earlier output.
    assert main(["evaluate", str(trained / "model"), "--split", "test"]) == 0
    assert sorted(p.name for p in (trained / "eval").iterdir()) == ["test"]


def test_evaluate_a_standalone_model_dir_on_a_csv_with_other_columns(trained: Path, tmp_path: Path, capsys):
    model = shutil.copytree(trained / "model", tmp_path / "exported")
    data = tmp_path / "new.csv"
    data.write_text("sms,kind\nWINNER! claim your FREE prize now call 81111,spam\nrunning late sorry,0\n", "utf-8")
    args = ["evaluate", str(model), "--data", str(data), "--text-column", "sms", "--label-column", "kind"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    result = read_json(tmp_path / "out" / "metrics.json")
    assert result["rows"] == 2 and result["metrics"]["per_class"]["0"]["support"] == 1  # "0" is ham's id
    assert "baseline" not in result  # no run, no train split to fit it on
    # Outside a run there is no default output dir.
    assert main(args) == 2
    assert "pass --out DIR" in capsys.readouterr().err


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("make_args", "fragment"),
    [
        (lambda run, tmp: [str(tmp / "missing")], "not found"),
        (lambda run, tmp: [str(run / "data")], "neither a run dir"),
        (
            lambda run, tmp: [str(run), "--data", str(write_csv(tmp / "cols.csv", "message,class\nhi,ham\n"))],
            "has no column 'text' (columns found: 'message', 'class'); set --text-column message",
        ),
        (
            lambda run, tmp: [str(run), "--data", str(write_csv(tmp / "labels.csv", "text,label\nhi,junk\n"))],
            "'junk' (1 row); use ham (0), spam (1) as labels",
        ),
        (lambda run, tmp: [str(run), "--data", str(tmp / "nope.csv")], "does not exist"),
        (lambda run, tmp: [str(run), "--split", "test", "--text-column", "x"], "apply to --data files"),
    ],
    ids=["missing-dir", "not-a-model-dir", "wrong-columns", "unknown-label", "missing-file", "columns-with-split"],
)
def test_evaluate_bad_input_fails_in_one_line_and_writes_nothing(
    trained: Path, tmp_path: Path, capsys, make_args, fragment
):
    out = tmp_path / "out"
    assert main(["evaluate", *make_args(trained, tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and fragment in err[-1]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp dirs left either


def test_evaluate_refuses_to_replace_a_dir_it_did_not_write(trained: Path, tmp_path: Path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me", encoding="utf-8")
    assert main(["evaluate", str(trained), "--out", str(precious)]) == 2
    assert "not an earlier `spam-tune evaluate` output" in capsys.readouterr().err
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]


def test_evaluate_rejects_split_and_data_together(trained: Path):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(trained), "--split", "test", "--data", "x.csv"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"evaluation.positive_label": 2}, "is not a class id"),
        ({"data.labels": "{ham: 0, spam: 1, other: 2}", "evaluation.threshold": "best_f1"}, "needs two classes"),
    ],
)
def test_evaluation_settings_that_cannot_work_fail_before_the_run_dir(
    tiny_run, tmp_path: Path, capsys, overrides, fragment
):
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run("bad", **overrides)]) == 2
    assert fragment in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "bad").exists()


def write_headerless_latin1_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """``label,text`` rows without a header, in latin-1 (a pound sign is one byte that is not UTF-8)."""
    path.write_bytes("".join(f'{label},"{text} \u00a3{i}"\n' for i, (label, text) in enumerate(rows)).encode("latin-1"))
    return path


def suggested_fixes(err: str) -> list[str]:
    """The ``data.KEY=VALUE`` options an error line tells the user to add."""
    return re.findall(r"\bdata\.[a-z_]+=[^\s;,()]+", err)


def test_evaluate_reads_a_headerless_latin1_csv_with_the_training_readers_options(trained: Path, tmp_path, capsys):
    from tests.conftest import toy_rows

    rows = toy_rows(10)
    data = write_headerless_latin1_csv(tmp_path / "comments.csv", rows)
    command = ["evaluate", str(trained), "--data", str(data), "--out", str(tmp_path / "eval")]
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "data.encoding=latin-1" in err, err
    # The advice is for this command: what it suggests is accepted (an unknown argument would exit through argparse).
    assert main([*command, *suggested_fixes(err)[:1]]) == 2
    err = capsys.readouterr().err.strip()
    assert "encoding" not in err and "unrecognized" not in err, err
    assert not (tmp_path / "eval").exists()  # nothing half-written by the refused runs

    reading = ["data.encoding=latin-1", "data.header=false", "data.text_column=1", "data.label_column=0"]
    assert main([*command, *reading]) == 0  # the training reader's own options
    assert read_json(tmp_path / "eval" / "metrics.json")["rows"] == len(rows)
    scored = pd.read_csv(tmp_path / "eval" / "predictions.csv", keep_default_na=False)
    assert scored["text"].tolist() == [f"{text} \u00a3{i}" for i, (_, text) in enumerate(rows)]  # decoded right
    assert scored["label"].tolist() == [label for label, _ in rows]

    # The column flags read positions once the file has no header, as data.text_column does.
    positions = ["data.encoding=latin-1", "data.header=false", "--text-column", "1", "--label-column", "0"]
    assert main([*command[:-1], str(tmp_path / "eval2"), *positions]) == 0
    assert read_json(tmp_path / "eval2" / "metrics.json")["rows"] == len(rows)

    # Headerless without positions, and a key that is not a reading option: one line each, naming the fix.
    assert main([*command, "data.encoding=latin-1", "data.header=false"]) == 2
    assert "data.text_column=N data.label_column=N" in capsys.readouterr().err
    assert main([*command, "training.learning_rate=1"]) == 2
    assert "takes file-reading options data.format=... data.encoding=..." in capsys.readouterr().err


def test_a_csv_given_as_uci_is_named_not_read_as_empty_texts(tmp_path):
    from pipeline.config import load_config
    from pipeline.data.readers import read_table
    from pipeline.errors import DataError

    data = tmp_path / "sms"
    data.write_text("label,text\nham,see you at noon\nspam,WIN a prize now\n", encoding="utf-8")
    cfg = load_config(None, ["data.source=file", f"data.path={data}", "data.format=uci"]).data
    with pytest.raises(DataError, match=r"not in the UCI format .* data.format=auto .* data.format=csv"):
        read_table(cfg)
    # auto reads it by its first line (no extension: a comma, so CSV with a header).
    auto = load_config(None, ["data.source=file", f"data.path={data}", "data.format=auto"]).data
    table, _ = read_table(auto)
    assert table["text"].tolist() == ["see you at noon", "WIN a prize now"]


def test_evaluate_refuses_multi_label_reading_options_for_a_single_label_model(trained: Path, tmp_path, capsys):
    data = write_csv(tmp_path / "sms.csv", "text,label\nWIN a prize now,spam\nsee you at noon,ham\n")
    out = tmp_path / "eval"
    assert main(["evaluate", str(trained), "--data", str(data), "--out", str(out), "data.label_separator=;"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "data.label_separator reads multi-label files" in err and "single-label model; drop it" in err, err
    assert not out.exists()
