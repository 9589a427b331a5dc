"""Interrupted runs lose nothing (issue 11, points 1-3 and 5 of the reliability work).

Real commands (``python train.py``, ``accelerate launch ... train.py``) are stopped the ways users and machines
stop them (``kill -9`` of the process group, Ctrl-C, SIGTERM), then continued with
``training.resume_from_checkpoint=true``; the result is compared with an uninterrupted run of the same seed.
On CPU it is the same bit for bit: weights, test metrics and the per-epoch history.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch
from safetensors.torch import load_file

from pipeline.cli import main
from pipeline.export.folder import check_model_folder
from pipeline.rundir import RESUME_FLAG, RunDir
from pipeline.serve.classifier import Classifier
from pipeline.train.trainer import checkpoint_step, last_complete_checkpoint
from tests.conftest import write_toy_data
from tests.reliability.conftest import ACCELERATE, SMOKE, Running, in_epoch, run_overrides, train_command

STEPS_PER_EPOCH = 6  # 84 train rows, batch 16
TRAINED = "pipeline.evaluation.predictions: validation:"
"""Logged after training, when the best model has scored its first split (before report and export)."""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("interrupt")
    data = write_toy_data(root / "toy.tsv")

    def overrides(name: str, *extra: str) -> list[str]:
        return [*run_overrides(data, root / name, root / "cache"), *extra]

    return SimpleNamespace(root=root, overrides=overrides)


@pytest.fixture(scope="module")
def uninterrupted(work: SimpleNamespace):
    """The reference run, started at once so it trains while a test interrupts its twin."""
    running = Running.start(train_command(work.overrides("whole")))
    finished: list[Path] = []

    def result() -> Path:
        if not finished:
            assert running.finish() == 0, running.text[-4000:]
            finished.append(work.root / "whole")
        return finished[0]

    yield result
    running.kill(signal.SIGKILL)


def processes_running_in(run: Path) -> list[str]:
    """Command lines of the live processes started for ``run`` (their arguments name its output dir)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []  # None for a process that ended meanwhile
        if f"output.dir={run}" in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(" ".join(cmdline))
    return found


def processes_left_in(run: Path, grace: float = 5.0) -> list[str]:
    """What still runs for ``run`` ``grace`` seconds after its output ended: a process that closed its output
    while exiting can still be listed for a moment; a worker that trains on stays."""
    deadline = time.monotonic() + grace
    while (left := processes_running_in(run)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def assert_same_run(reference: Path, resumed: Path) -> None:
    """Same test metrics, same history, same final weights (bit for bit) as the uninterrupted run."""
    ref, res = (json.loads((run / "metrics.json").read_text()) for run in (reference, resumed))
    assert res["test"] == ref["test"]
    assert res["validation"] == ref["validation"]
    assert res["history"] == ref["history"] and len(ref["history"]) == 3
    ref_weights = load_file(reference / "model" / "model.safetensors")
    res_weights = load_file(resumed / "model" / "model.safetensors")
    assert ref_weights.keys() == res_weights.keys()
    unequal = [name for name in ref_weights if not torch.equal(ref_weights[name], res_weights[name])]
    assert not unequal, f"tensors differ after resume: {unequal}"


def assert_complete_or_absent(model: Path) -> None:
    """What a kill may leave: no model folder, or one that is whole (it is renamed into place when complete)."""
    if model.exists():
        check_model_folder(model)
        Classifier(model).predict(["hello"])


def test_kill_9_mid_epoch_then_resume_ends_as_the_uninterrupted_run(work, uninterrupted, capsys):
    killed = Running.start(train_command(work.overrides("killed")))
    killed.wait_for(in_epoch(1, 2))  # a step of epoch 2 was logged: epoch 1's checkpoint is complete
    killed.kill(signal.SIGKILL)
    assert killed.finish() == -signal.SIGKILL
    run = work.root / "killed"
    assert not (run / "metrics.json").exists() and not (run / "INTERRUPTED").exists()
    assert not (run / "model").exists()  # killed while training: no model folder, not even a partial one
    assert checkpoint_step(run / "checkpoints" / f"checkpoint-{STEPS_PER_EPOCH}") == STEPS_PER_EPOCH
    before = sorted(p.name for p in (run / "checkpoints").iterdir())

    # Rerunning without the resume flag would start over and rotate the checkpoints away: refused, in one line.
    assert main(["train", "--config", SMOKE, *work.overrides("killed")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: output.dir {run} holds an unfinished run")
    assert RESUME_FLAG in err[-1] and "output.overwrite=true" in err[-1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before

    resumed = Running.start(train_command([*work.overrides("killed"), RESUME_FLAG]))
    assert resumed.finish() == 0, resumed.text[-4000:]
    assert f"resuming from {run / 'checkpoints' / f'checkpoint-{STEPS_PER_EPOCH}'} (step 6)" in resumed.text
    assert_same_run(uninterrupted(), run)


def test_ctrl_c_saves_at_a_step_boundary_prints_the_resume_command_and_resumes_exactly(work, uninterrupted):
    run = work.root / "ctrl-c"
    first = Running.start(train_command(work.overrides("ctrl-c")))
    first.wait_for(in_epoch(1, 2))
    first.kill(signal.SIGINT)
    assert first.finish() == 130, first.text[-4000:]
    assert "Traceback" not in first.text and "KeyboardInterrupt" not in first.text
    last = first.text.strip().splitlines()[-1]
    assert last.startswith("interrupted: SIGINT stopped training at step "), last
    step = int(last.split("at step ")[1].split()[0])
    checkpoint = run / "checkpoints" / f"checkpoint-{step}"
    assert STEPS_PER_EPOCH < step <= 2 * STEPS_PER_EPOCH and checkpoint_step(checkpoint) == step
    assert f"checkpoint {checkpoint} is kept" in last
    assert RESUME_FLAG in (run / "INTERRUPTED").read_text()
    assert not (run / "model").exists() and not (run / "metrics.json").exists()

    # The printed command is the one to run: this command line plus the resume flag.
    command = shlex.split(last.split("to resume, run: ", 1)[1])
    assert command[:2] == ["python", "train.py"] and command[-1] == RESUME_FLAG
    resume = [sys.executable, *command[1:]]
    second = Running.start(resume)
    assert f"resuming from {checkpoint} (step {step})" in second.wait_for(lambda line: "resuming from" in line)
    second.wait_for(lambda line: TRAINED in line)  # training is over: kill -9 while evaluating
    second.kill(signal.SIGKILL)
    second.finish()
    assert not (run / "metrics.json").exists()
    assert_complete_or_absent(run / "model")

    third = Running.start(resume)  # continues from the final checkpoint: nothing left to train
    assert third.finish() == 0, third.text[-4000:]
    assert not (run / "INTERRUPTED").exists()
    assert_same_run(uninterrupted(), run)


def test_sigterm_under_accelerate_launch_saves_and_prints_the_launch_command(work):
    run = work.root / "sigterm"
    launched = Running.start(train_command(work.overrides("sigterm"), launcher=ACCELERATE))
    launched.wait_for(in_epoch(1, 2))
    launched.kill(signal.SIGTERM)  # a scheduler's stop: the whole group (accelerate's launcher and train.py)
    # train.py finishes the step, saves, explains. The launcher's own status is what a shell shows as 143 either
    # way: accelerate <= 1.15 died of the signal at once (-15 here), >= 1.16 catches it, stops its child and
    # exits 128 + 15.
    assert launched.finish() in (-signal.SIGTERM, 128 + signal.SIGTERM)
    assert "Traceback" not in launched.text
    last = launched.text.strip().splitlines()[-1]
    assert last.startswith("interrupted: SIGTERM stopped training at step "), last
    assert "to resume, run: accelerate launch --quiet --config_file accelerate_config.yaml" in last
    assert last.endswith(RESUME_FLAG)
    step = int(last.split("at step ")[1].split()[0])
    assert checkpoint_step(run / "checkpoints" / f"checkpoint-{step}") == step
    assert (run / "INTERRUPTED").is_file() and not (run / "model").exists()


def test_kill_9_of_a_two_process_launch_stops_its_workers_at_a_step_boundary(work):
    # torch's elastic launcher starts the DDP workers in their own sessions, so kill -9 of the launch's process
    # group misses them; without their parent-death signal they trained on and finished the run as orphans.
    run = work.root / "ddp-killed"
    two_cpu = [*ACCELERATE, "--num_processes", "2", "--cpu"]
    launched = Running.start(train_command(work.overrides("ddp-killed"), launcher=two_cpu))
    launched.wait_for(in_epoch(1, 2))  # 3 steps per epoch with 2 processes: epoch 1's checkpoint is complete
    launched.kill(signal.SIGKILL)
    launched.finish()  # the output ends when the last process holding it, a worker, has exited
    assert not processes_left_in(run), "a worker outlived the killed launch"
    assert "interrupted: SIGTERM stopped training at step " in launched.text
    assert not (run / "metrics.json").exists() and not (run / "model").exists()
    assert "SIGTERM stopped training" in (run / "INTERRUPTED").read_text()
    checkpoint = last_complete_checkpoint(RunDir(run))
    assert checkpoint is not None and checkpoint_step(checkpoint) > 3


def test_predict_takes_a_run_dir_and_names_the_empty_inputs(uninterrupted, capsys):
    assert main(["predict", str(uninterrupted()), "WINNER! claim your FREE prize now, call 80999"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("ham", "spam")
    assert main(["predict", str(uninterrupted()), "hello", " ", "see you", ""]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' weight-loading progress bar
    assert last == "error: input(s) 1, 3 (0-based) are empty or not text; pass non-empty strings"


def test_predict_and_evaluate_refuse_an_incomplete_model_folder(work, uninterrupted, tmp_path, capsys):
    broken = tmp_path / "run"
    shutil.copytree(uninterrupted(), broken)
    (broken / "model" / "model.safetensors").unlink()  # e.g. copied half-way by hand
    for command in (["predict", str(broken / "model"), "hello"], ["evaluate", str(broken)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "weights" in err[0], err
    hidden = tmp_path / ".model.abc123.tmp"  # what a kill during export leaves: never taken for a model
    shutil.copytree(uninterrupted() / "model", hidden)
    assert main(["predict", str(hidden), "hello"]) == 2
    assert "unfinished write" in capsys.readouterr().err
