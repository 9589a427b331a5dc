"""Stopping and resuming, in-process and in units: exit codes, markers, overwrite, incomplete checkpoints, hints.

The signals here are raised by a Trainer callback at a chosen step, so the stop point is exact; the real
``kill``/Ctrl-C of a running command is in ``test_interrupt.py``.
"""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from pipeline import cli
from pipeline.cli import main, resume_command
from pipeline.commands import train as run_module
from pipeline.errors import TrainingError
from pipeline.rundir import RESUME_FLAG, RunDir, check_run_dir
from pipeline.train.trainer import checkpoint_step, last_complete_checkpoint, resume_checkpoint
from tests.conftest import tiny_overrides
from tests.reliability.conftest import SMOKE


class RaiseSignal(TrainerCallback):
    """Delivers ``sig`` to this process ``times`` times at the end of step ``step``, as ``kill`` would."""

    def __init__(self, step: int, sig: int, times: int = 1) -> None:
        self.step, self.sig, self.times = step, sig, times

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            for _ in range(self.times):
                signal.raise_signal(self.sig)
        return control


EVERY_EPOCH = {"training.checkpoint_minutes": 0}
"""Checkpoints at every epoch, as these tests expect (the default writes one every 10 minutes at most)."""


def signalled_at(monkeypatch: pytest.MonkeyPatch, callback: TrainerCallback) -> None:
    build = run_module.build_trainer

    def build_with_signal(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(callback)  # before the run's own stop callback: the signal lands first
        return trainer

    monkeypatch.setattr(run_module, "build_trainer", build_with_signal)


def test_sigterm_exits_143_keeps_a_checkpoint_and_overwrite_starts_over(tmp_path, toy_data_file, monkeypatch, capsys):
    run = tmp_path / "run"
    overrides = tiny_overrides(toy_data_file, run, tmp_path / "cache", **EVERY_EPOCH, **{"evaluation.plots": False})
    args = ["train", "--config", SMOKE, *overrides]
    handler_before = signal.getsignal(signal.SIGTERM)
    signalled_at(monkeypatch, RaiseSignal(step=2, sig=signal.SIGTERM))
    assert main(args) == 143
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("interrupted: SIGTERM stopped training at step 2 (epoch 0.33); "), last
    assert last.endswith(RESUME_FLAG)
    assert checkpoint_step(run / "checkpoints" / "checkpoint-2") == 2
    assert "SIGTERM stopped training at step 2" in (run / "INTERRUPTED").read_text()
    assert signal.getsignal(signal.SIGTERM) is handler_before  # restored after training

    monkeypatch.undo()
    assert main([*args, "output.overwrite=true"]) == 0  # start over: the old run's checkpoints go first
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-12", "checkpoint-6"]
    assert not (run / "INTERRUPTED").exists()
    assert json.loads((run / "metrics.json").read_text())["training"]["epoch"] == 2.0


def test_a_second_ctrl_c_stops_at_once(tmp_path, toy_data_file, monkeypatch, capsys):
    run = tmp_path / "run"
    signalled_at(monkeypatch, RaiseSignal(step=3, sig=signal.SIGINT, times=2))
    assert main(["train", "--config", SMOKE, *tiny_overrides(toy_data_file, run, tmp_path / "cache")]) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("interrupted: stopped at once by a second SIGINT; resume continues from the last complete")
    assert (run / "INTERRUPTED").is_file() and not (run / "model").exists()


def test_a_signal_in_the_last_step_of_an_epoch_lets_that_epoch_evaluate_first(tmp_path, toy_data_file, monkeypatch):
    # The checkpoint must hold what an uninterrupted run has after step 6 (the end of epoch 1): its evaluation
    # included, or a resumed run would skip it (different history, maybe a different best checkpoint).
    run = tmp_path / "run"
    signalled_at(monkeypatch, RaiseSignal(step=6, sig=signal.SIGINT))
    assert (
        main(["train", "--config", SMOKE, *tiny_overrides(toy_data_file, run, tmp_path / "cache", **EVERY_EPOCH)])
        == 130
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-6"]
    state = json.loads((run / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert any("eval_loss" in entry and entry["epoch"] == 1.0 for entry in state["log_history"])
    assert any("train_eval_loss" in entry and entry["epoch"] == 1.0 for entry in state["log_history"])
    assert state["best_model_checkpoint"].endswith("checkpoint-6")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["training.fp16=true"], "training.fp16=true needs a CUDA GPU"),
        (["training.fp16=true", "training.bf16=true"], "training.bf16 and training.fp16 are both true"),
    ],
)
def test_contradictory_training_options_are_refused_before_anything_is_written(
    tmp_path, toy_data_file, capsys, overrides, fragment
):
    if overrides == ["training.fp16=true"] and torch.cuda.is_available():
        pytest.skip("fp16 is valid with a GPU")
    args = ["train", "--config", SMOKE, *tiny_overrides(toy_data_file, tmp_path / "run", tmp_path / "cache")]
    assert main([*args, *overrides]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, last
    assert not (tmp_path / "run").exists()


def make_checkpoint(folder: Path, step: int, *, state: str | None = None, weights: bool = True) -> Path:
    folder.mkdir(parents=True)
    if weights:
        (folder / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    return folder


def test_resume_skips_a_checkpoint_cut_off_while_it_was_written(tmp_path: Path, caplog):
    run = RunDir(tmp_path)
    good = make_checkpoint(run.checkpoints / "checkpoint-6", 6, state=json.dumps({"global_step": 6}))
    make_checkpoint(run.checkpoints / "checkpoint-12", 12, state='{"global_step": 1')  # killed mid-write
    make_checkpoint(run.checkpoints / "checkpoint-9", 9, state=json.dumps({"global_step": 9}), weights=False)
    assert last_complete_checkpoint(run) == good
    assert "skipping the incomplete checkpoint" in caplog.text and "checkpoint-12" in caplog.text
    assert resume_checkpoint(True, run) == str(good)
    with pytest.raises(TrainingError, match="checkpoint-12 is incomplete"):
        resume_checkpoint(str(run.checkpoints / "checkpoint-12"), run)
    with pytest.raises(TrainingError, match="holds no complete checkpoint"):
        resume_checkpoint(True, RunDir(tmp_path / "empty"))


def test_check_run_dir_refuses_an_unfinished_run_but_allows_resume_or_overwrite(tmp_path: Path):
    make_checkpoint(tmp_path / "checkpoints" / "checkpoint-6", 6, state="{}")
    with pytest.raises(TrainingError) as caught:
        check_run_dir(tmp_path, overwrite=False, resume=False)
    assert "holds an unfinished run (checkpoints up to checkpoint-6" in str(caught.value)
    assert RESUME_FLAG in str(caught.value) and "output.overwrite=true" in str(caught.value)
    assert check_run_dir(tmp_path, overwrite=False, resume=True).root == tmp_path
    assert check_run_dir(tmp_path, overwrite=True, resume=False).root == tmp_path
    assert check_run_dir(tmp_path / "fresh", overwrite=False, resume=False).root == tmp_path / "fresh"


def test_resume_command_repeats_the_command_with_the_flag(monkeypatch):
    monkeypatch.setattr("pipeline.launch.launcher_command_line", lambda: None)
    assert resume_command(["train.py", "--config", "c.yaml", "a=b c"]) == (
        f"python train.py --config c.yaml 'a=b c' {RESUME_FLAG}"
    )
    already = ["/venv/bin/spam-tune", "train", "-c", "c.yaml", "training.resume_from_checkpoint=runs/x/checkpoint-6"]
    assert resume_command(already) == f"spam-tune train -c c.yaml {RESUME_FLAG}"
    launched = ["--quiet", "--num_processes", "2", "--cpu", "train.py", "--config", "c.yaml"]
    monkeypatch.setattr("pipeline.launch.launcher_command_line", lambda: launched)
    assert resume_command(["train.py", "--config", "c.yaml"]) == (
        f"accelerate launch --quiet --num_processes 2 --cpu train.py --config c.yaml {RESUME_FLAG}"
    )


def test_disk_full_is_one_line_and_leaves_the_previous_files_whole(tmp_path, toy_data_file, monkeypatch, capsys):
    out = tmp_path / "splits"
    args = ["prepare", "--out", str(out), "--config", SMOKE, "data.source=file", f"data.path={toy_data_file}"]
    args.append("data.format=uci")  # the toy file is label<TAB>text without a header
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pipeline.fileio.os.fsync", full)  # every atomic write now hits a full disk
    assert main([*args, "data.seed=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot write") and "No space left on device" in err[-1], err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files, old splits untouched

    # A full disk anywhere else (a Trainer checkpoint, a library's own write) is one line too, not a traceback.
    def train_on_full_disk(args) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoints/checkpoint-6/optimizer.pt")

    monkeypatch.setitem(cli.COMMANDS, "train", (train_on_full_disk, "train"))
    assert main(["train"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: disk full writing runs/x/checkpoints/checkpoint-6/optimizer.pt; free some space and rerun "
        f"(a training run: add {RESUME_FLAG})"
    )


def test_token_budget_batches_resume_mid_epoch_exactly(tmp_path, toy_data_file, monkeypatch):
    # Batches of varying size come from TokenBudgetBatchSampler; a resumed epoch must skip exactly the batches
    # already trained (accelerate's skip_first_batches over that sampler) and see the rest in the same order.
    settings = {
        **EVERY_EPOCH,
        "training.num_train_epochs": 2,
        "training.per_device_train_batch_size": 16,
        "training.train_batch_tokens": 256,
        "evaluation.plots": False,
        "evaluation.report": False,
    }

    def train(name: str, *extra: str) -> int:
        overrides = tiny_overrides(toy_data_file, tmp_path / name, tmp_path / "cache", **settings)
        return main(["train", "--config", SMOKE, *overrides, *extra])

    assert train("whole") == 0
    whole = tmp_path / "whole"
    steps = json.loads((whole / "trainer_state.json").read_text())["global_step"]
    layout = json.loads((whole / "metrics.json").read_text())["training"]
    assert layout["train_batch_tokens"] == 256 and layout["mean_rows_per_step"] < 16  # the budget binds
    per_epoch = steps // 2
    signalled_at(monkeypatch, RaiseSignal(step=per_epoch + 2, sig=signal.SIGINT))  # 2 steps into epoch 2
    assert train("cut") == 130
    monkeypatch.undo()
    assert train("cut", RESUME_FLAG) == 0
    cut = tmp_path / "cut"
    assert (
        json.loads((cut / "metrics.json").read_text())["test"]
        == json.loads((whole / "metrics.json").read_text())["test"]
    )
    ref, res = (load_file(run / "model" / "model.safetensors") for run in (whole, cut))
    assert [name for name in ref if not torch.equal(ref[name], res[name])] == []
