"""End to end through the real entry points (CLI, train.py, accelerate launch) with a tiny GPT-2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.launch import cpu_threads_per_process

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"accuracy", "precision", "recall", "f1"}


def offline_env() -> dict[str, str]:
    return os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def assert_finished_run(run: Path) -> dict:
    metrics = read_metrics(run)
    assert "train" not in metrics  # scored splits by default: validation and test (evaluation.splits)
    for split in ("validation", "test"):
        assert set(metrics[split]) >= METRIC_KEYS, split
        assert all(0.0 <= metrics[split][k] <= 1.0 for k in METRIC_KEYS)
    for name in ("config.yaml", "environment.json", "data/train.csv", "data/test.csv", "model/config.json"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    return metrics


def test_cli_train_full_mode_learns_the_toy_set(tiny_run, tmp_path: Path, capsys):
    every_epoch = {"training.checkpoint_minutes": 0}  # a checkpoint at every epoch, to resume from below
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run(**every_epoch)]) == 0
    run = tmp_path / "run"
    metrics = assert_finished_run(run)
    assert metrics["test"]["accuracy"] >= 0.9
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"] > 0
    timed = metrics["training"]["epoch_seconds"]  # per epoch, for speed after the warm-up epoch
    assert len(timed) == metrics["training"]["epoch"] and min(timed) > 0
    assert metrics["data"]["split_sizes"] == {"train": 84, "validation": 12, "test": 24}
    # Every scored split's rows as the model decided them, in the order of data/<split>.csv.
    assert sorted(p.name for p in (run / "predictions").iterdir()) == ["test.csv", "validation.csv"]
    for split in ("validation", "test"):
        rows = metrics["data"]["split_sizes"][split]
        table = pd.read_csv(run / "predictions" / f"{split}.csv")
        assert list(table.columns) == ["text", "label", "predicted", "confidence", "p_ham", "p_spam"]
        assert table["text"].tolist() == pd.read_csv(run / "data" / f"{split}.csv")["text"].tolist()
        assert len(table) == rows and (table["predicted"] == table["label"]).mean() == metrics[split]["accuracy"]
        assert ((table["p_ham"] + table["p_spam"] - 1).abs() < 1e-6).all()
    assert not (run / "model" / "predictions").exists()  # the model folder (what push uploads) holds no data rows
    saved = (run / "config.yaml").read_text(encoding="utf-8")
    assert "mode: full" in saved and str(tmp_path / "run") in saved
    meta = json.loads((run / "model" / "spam_tune.json").read_text(encoding="utf-8"))
    assert meta["id2label"] == {"0": "ham", "1": "spam"} and meta["max_length"] == 32
    assert "test accuracy" in capsys.readouterr().out

    # The saved model classifies new text through the predict command.
    assert (
        main(["predict", str(run / "model"), "WINNER! claim your FREE prize now, call 80999", "see you at lunch"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["label"] for p in lines] == ["spam", "ham"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in lines)

    # A finished run is never silently overwritten...
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run(**every_epoch)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    # ...but can be resumed from its last checkpoint for more epochs.
    extra = ["training.resume_from_checkpoint=true", "training.num_train_epochs=3"]
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run(**every_epoch), *extra]) == 0
    resumed = read_metrics(run)
    assert resumed["training"]["epoch"] == 3.0
    assert len(resumed["training"]["epoch_seconds"]) == 3 - len(timed)  # only the epochs this process trained
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1].startswith("checkpoint-")


def test_last_blocks_class_weights_and_early_stopping(tiny_run, tmp_path: Path):
    settings = {
        "model.mode": "last_blocks",
        "data.balance": "class_weights",
        "data.split_mode": "stratified",
        "training.num_train_epochs": 8,
        "training.early_stopping_patience": 1,
    }
    assert main(["train", "--config", "configs/last_blocks.yaml", *tiny_run("lb", **settings)]) == 0
    metrics = assert_finished_run(tmp_path / "lb")
    # Validation F1 on the toy set saturates within a few epochs; then training stops early.
    assert metrics["training"]["epoch"] < 8
    assert 0 < metrics["parameters"]["trainable"] < metrics["parameters"]["total"]
    assert metrics["data"]["class_weights"] is not None


def test_input_template_travels_with_the_model_and_is_applied_when_serving(tiny_run, tmp_path: Path):
    from pipeline.serve.classifier import Classifier

    template = "SMS:\n{text}\nSpam or ham?"
    assert (
        main(["train", "--config", "configs/smoke.yaml", *tiny_run("tpl", **{"model.input_template": template})]) == 0
    )
    run = tmp_path / "tpl"
    assert_finished_run(run)
    classifier = Classifier(run / "model")  # nothing of the config is read: the saved tokenizer holds the template
    ids = classifier.tokenizer("hello there")["input_ids"]
    assert classifier.tokenizer.decode(ids) == "SMS:\nhello there\nSpam or ham?"
    # Served as trained: the saved model scores the test texts as the run's final evaluation did.
    table = pd.read_csv(run / "predictions" / "test.csv", keep_default_na=False)
    served = classifier.probabilities(table["text"].tolist())[:, 1].numpy()
    assert abs(served - table["p_spam"].to_numpy()).max() < 1e-5


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"data.path": "/nonexistent/sms.tsv"}, "does not exist"),
        ({"data.labels": "{ham: 0, junk: 1}"}, "spam"),
        ({"training.extra_args": "{no_such_arg: 1}"}, "no_such_arg"),
        ({"training.early_stopping_patience": 2, "training.eval_strategy": "no"}, "load_best_model_at_end"),
    ],
)
def test_bad_input_fails_in_one_line_and_leaves_no_run_dir(tiny_run, tmp_path: Path, capsys, overrides, fragment):
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run("bad", **overrides)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines are progress logs
    assert last.startswith("error: ") and fragment in last
    assert not (tmp_path / "bad").exists()


def test_non_utf8_data_file(tiny_run, tmp_path: Path, capsys):
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes("ham\thello\nspam\tWIN \xa3100 now\n".encode("latin-1"))
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run("bad", **{"data.path": str(bad)})]) == 2
    assert "UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def free_port() -> int:
    # Each multi-process test gets its own rendezvous port, so runs side by side never meet.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_launcher(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "accelerate_config.yaml"]
    cmd += ["--main_process_port", str(free_port()), *args]
    return subprocess.run(cmd, cwd=ROOT, env=offline_env(), capture_output=True, text=True, timeout=timeout)


def test_accelerate_launch_single_process(tiny_run, tmp_path: Path):
    proc = run_launcher(["train.py", "--config", "configs/smoke.yaml", *tiny_run("acc1")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_finished_run(tmp_path / "acc1")
    # accelerate exports OMP_NUM_THREADS=1 to its worker; train.py takes the machine's cores back.
    environment = json.loads((tmp_path / "acc1" / "environment.json").read_text())
    expected = cpu_threads_per_process(1) if "OMP_NUM_THREADS" not in os.environ else int(os.environ["OMP_NUM_THREADS"])
    assert environment["torch_threads"] == expected
    # Whether this environment compiles transformers on every start is recorded, and warned about exactly then.
    assert environment["imports_compiled_from_source"] == ("compiles transformers" in proc.stderr)


def test_accelerate_launch_two_cpu_processes_runs_ddp(tiny_run, tmp_path: Path):
    proc = run_launcher(
        ["--num_processes", "2", "--cpu", "train.py", "--config", "configs/smoke.yaml", *tiny_run("acc2")]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = assert_finished_run(tmp_path / "acc2")
    # 84 training rows, batch 16 per process: 3 steps/epoch with 2 processes (6 with one).
    assert metrics["training"]["epoch"] == 2.0
    state = json.loads((tmp_path / "acc2" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and 3 * 2 * 16 >= 84
    assert metrics["training"]["processes"] == 2 and metrics["training"]["effective_batch_size"] == 32


def test_plain_python_train_script_reports_errors(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/smoke.yaml", "training.learnin_rate=1"],
        cwd=ROOT,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "did you mean 'training.learning_rate'" in proc.stderr
