"""bench/quality.py: runs per seed through train.py, the summary numbers and the JSON (tiny GPT-2, toy data)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TINY_MODEL_SETTINGS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_quality", None)


def tiny_model_sets() -> list[str]:
    values = {**TINY_MODEL_SETTINGS, "evaluation.epoch_train_rows": 0}
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def test_the_book_split_stays_fixed_and_the_honest_split_follows_the_seed(quality):
    assert quality.seed_overrides("book", 2, None) == ["training.seed=2"]
    assert quality.seed_overrides("honest", 2, None) == ["training.seed=2", "data.seed=2"]
    assert quality.seed_overrides("honest", 2, 123) == ["training.seed=2", "data.seed=123"]
    assert "data.split_mode=book" in quality.SPLIT_OVERRIDES["book"]
    assert {"data.dedupe=true", "data.balance=none"} <= set(quality.SPLIT_OVERRIDES["honest"])
    with pytest.raises(SystemExit):
        quality.parse_args(["--split", "book", "--data-seed", "5"])


def test_summary_counts_errors_and_aggregates_mean_and_sample_std(quality):
    metrics = {"accuracy": 0.9, "precision": 1.0, "recall": 0.8, "f1": 0.888, "confusion_matrix": [[5, 0], [1, 4]]}
    summary = quality.split_summary(metrics)
    assert summary["errors"] == 1 and summary["n"] == 10 and summary["roc_auc"] is None
    mean, std = quality.aggregate([{"accuracy": 0.9, "errors": 3}, {"accuracy": 1.0, "errors": 1}])
    assert mean["accuracy"] == pytest.approx(0.95) and mean["errors"] == 2
    assert std["errors"] == pytest.approx(2**0.5)
    assert "spam_f1" not in mean  # missing everywhere: not averaged


def test_model_dir_finds_a_checkpoint_or_its_only_gguf(quality, tmp_path: Path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert quality.find_gguf(tmp_path / "ckpt", None) is None
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "m.gguf").write_bytes(b"GGUF")
    assert quality.find_gguf(tmp_path / "g", None) == "m.gguf"
    (tmp_path / "g" / "n.gguf").write_bytes(b"GGUF")
    with pytest.raises(quality.BenchError, match="--gguf-file"):
        quality.find_gguf(tmp_path / "g", None)
    with pytest.raises(quality.BenchError, match="not in"):
        quality.find_gguf(tmp_path / "g", "missing.gguf")


def test_two_seeds_on_the_honest_split_write_the_issue_json(quality, toy_data_file: Path, tmp_path: Path, capsys):
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--config", "configs/smoke.yaml", "--split", "honest", "--mode", "full", "--seeds", "0", "1"]
    argv += ["--jobs", "2", "--launcher", "python", "--device", "cpu", "--data", str(toy_data_file)]
    argv += ["--out-dir", str(out), "--runs-dir", str(runs), *tiny_model_sets()]
    assert quality.main(argv) == 0

    result = json.loads((out / "quality-honest-full.json").read_text(encoding="utf-8"))
    assert result["split"] == "honest" and result["mode"] == "full"
    assert [r["seed"] for r in result["per_seed"]] == [0, 1]
    assert [r["data_seed"] for r in result["per_seed"]] == [0, 1]  # a different split per seed
    assert {"accuracy", "spam_f1"} <= set(result["mean"]) and {"accuracy", "spam_f1"} <= set(result["baseline_mean"])
    for record in result["per_seed"]:
        # The toy set's 120 rows hold 84 distinct texts: 59/8/17 after dedupe.
        assert record["test"]["n"] == 17 == record["split_sizes"]["test"] and 0 <= record["test"]["errors"] <= 17
        assert record["baseline_test"]["n"] == 17
        assert not (Path(record["run_dir"]) / "checkpoints").exists()  # deleted: the numbers are what is kept
        # The same run decided at the threshold that maximises validation F1, read back from its predictions.
        alt = record["test_at_validation_best_f1"]
        test = pd.read_csv(Path(record["run_dir"]) / "predictions" / "test.csv")
        assert alt["n"] == 17 and 0.0 < alt["threshold"] < 1.0
        assert alt["errors"] == ((test["p_spam"] >= alt["threshold"]) != (test["label"] == "spam")).sum()
        # The TF-IDF row fitted again from the run's train predictions is the run's own row, error for error.
        shared = record["test_errors_vs_baseline"]
        assert shared["baseline"] == record["baseline_test"]["errors"] and shared["model"] == record["test"]["errors"]
        assert shared["both"] + shared["model_only"] == shared["model"]
        assert shared["both"] + shared["baseline_only"] == shared["baseline"]
    assert set(result["mean_at_validation_best_f1"]) >= {"accuracy", "spam_f1", "errors"}
    assert result["target"]["metric"] == "spam_f1" and result["failed"] == []
    assert "evaluation.baseline=true" in result["config"]["bench_overrides"]
    assert result["config"]["yaml"].startswith("# accelerate launch")
    printed = capsys.readouterr().out
    assert "TF-IDF mean" in printed and "wrote" in printed


def test_a_failing_seed_is_reported_and_no_json_is_written(quality, toy_data_file: Path, tmp_path: Path, capsys):
    argv = ["--config", "configs/smoke.yaml", "--seeds", "0", "--launcher", "python", "--device", "cpu"]
    argv += ["--data", str(toy_data_file), "--out-dir", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]
    argv += ["--set", "model.max_length=1"]  # rejected by the config check inside the run
    assert quality.main(argv) == 1
    assert not (tmp_path / "out").exists()
    assert "seed 0 FAILED (exit 2)" in capsys.readouterr().out


def test_baseline_only_fits_the_tfidf_row_per_seed_split(quality, toy_data_file: Path, tmp_path: Path):
    argv = ["--baseline-only", "--split", "honest", "--seeds", "0", "1", "--data", str(toy_data_file)]
    assert quality.main([*argv, "--out-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "quality-honest-tfidf.json").read_text(encoding="utf-8"))
    assert [r["data_seed"] for r in result["per_seed"]] == [0, 1]
    # Honest split: the toy set's 120 rows hold 84 distinct texts -> 59/8/17 after dedupe.
    assert all(r["baseline_test"]["n"] == 17 == r["split_sizes"]["test"] for r in result["per_seed"])
    assert 0.5 <= result["baseline_mean"]["accuracy"] <= 1.0 and "spam_f1" in result["baseline_mean"]


def test_a_finished_run_of_the_same_command_is_reused_and_no_other(quality, tmp_path: Path):
    run_dir = tmp_path / "book-lora-seed0"
    run_dir.mkdir()
    command = ["python", "train.py", "--config", "configs/smoke.yaml", "training.seed=0"]
    run_dir.with_suffix(".log").write_text("$ " + " ".join(command) + "\nlog lines\n", encoding="utf-8")
    (run_dir / "environment.json").write_text(json.dumps({"wall_seconds": 12.5}), encoding="utf-8")
    assert quality.finished_run(command, run_dir, 0) is None  # no metrics.json: it did not finish
    (run_dir / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.9}}), encoding="utf-8")
    outcome = quality.finished_run(command, run_dir, 0)
    assert outcome.returncode == 0 and outcome.wall_seconds == 12.5 and outcome.metrics["test"]["accuracy"] == 0.9
    assert quality.finished_run([*command, "training.learning_rate=1"], run_dir, 0) is None  # another command
