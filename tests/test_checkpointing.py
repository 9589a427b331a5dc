"""Checkpoints only where they pay (CheckpointGate) and the best weights kept in memory (KeepBestWeights)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerControl, TrainerState

from pipeline.cli import main
from pipeline.train.checkpointing import CheckpointGate, KeepBestWeights

from .test_train_e2e import assert_finished_run, read_metrics

ARGS = SimpleNamespace(world_size=1, metric_for_best_model="f1", greater_is_better=True)


def test_gate_lets_a_due_checkpoint_through_only_after_its_minutes():
    control = TrainerControl(should_save=True)
    CheckpointGate(minutes=10).on_epoch_end(ARGS, TrainerState(), control)
    assert control.should_save is False  # seconds into the run: not worth writing
    control = TrainerControl(should_save=True)
    CheckpointGate(minutes=0).on_step_end(ARGS, TrainerState(), control)
    assert control.should_save is True  # 0 minutes: every checkpoint, transformers' behaviour
    gate, control = CheckpointGate(minutes=0.5), TrainerControl(should_save=True)
    gate.last -= 31  # half a minute of training since the last checkpoint
    gate.on_epoch_end(ARGS, TrainerState(), control)
    assert control.should_save is True
    control = TrainerControl(should_save=False)
    gate.on_epoch_end(ARGS, TrainerState(), control)
    assert control.should_save is False  # never raises a save nobody asked for


def test_best_weights_are_restored_at_the_end():
    model = torch.nn.Linear(2, 1)
    frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    model.register_parameter("frozen", frozen)
    keep, state = KeepBestWeights(), TrainerState()

    def evaluate(step: int, f1: float) -> None:
        state.global_step, state.epoch = step, float(step)
        keep.on_evaluate(ARGS, state, TrainerControl(), metrics={"eval_f1": f1}, model=model)
        if state.best_metric is None or f1 > state.best_metric:  # what the Trainer does after on_evaluate
            state.best_metric, state.best_global_step = f1, step

    with torch.no_grad():
        model.weight.fill_(1.0)
    evaluate(1, 0.8)
    with torch.no_grad():
        model.weight.fill_(2.0)
    evaluate(2, 0.9)  # the best
    with torch.no_grad():
        model.weight.fill_(3.0)
    evaluate(3, 0.85)
    assert set(keep.weights) == {"weight", "bias"}  # only what trains is copied
    keep.on_train_end(ARGS, state, TrainerControl(), model=model)
    assert torch.equal(model.weight, torch.full((1, 2), 2.0))
    assert keep.weights is None  # the copy is freed


def test_best_weights_before_a_resume_are_left_to_the_trainer():
    model = torch.nn.Linear(2, 1)
    keep, state = KeepBestWeights(), TrainerState(best_metric=0.95, best_global_step=4)
    state.global_step = 6
    keep.on_evaluate(ARGS, state, TrainerControl(), metrics={"eval_f1": 0.9}, model=model)  # not better
    before = model.weight.detach().clone()
    keep.on_train_end(ARGS, state, TrainerControl(), model=model)
    assert keep.weights is None and torch.equal(model.weight, before)


def model_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def test_short_run_writes_no_checkpoint_and_ends_with_the_same_best_model(tiny_run, tmp_path: Path, capsys):
    """The in-memory best equals transformers' checkpoint-based best on the same seed, without the files."""
    # "Best" = the highest validation loss: an early epoch, so the weights restored are not the last ones.
    settings = {
        "training.num_train_epochs": 3,
        "training.learning_rate": 5e-3,
        "training.metric_for_best_model": "loss",
        "training.extra_args": "{greater_is_better: true}",
    }
    on_disk = tmp_path / "on_disk"
    assert (
        main(
            [
                "train",
                "--config",
                "configs/smoke.yaml",
                *tiny_run("on_disk", **settings, **{"training.checkpoint_minutes": 0}),
            ]
        )
        == 0
    )
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run("in_memory", **settings)]) == 0
    in_memory = tmp_path / "in_memory"
    disk, memory = assert_finished_run(on_disk), assert_finished_run(in_memory)
    assert len(list((on_disk / "checkpoints").glob("checkpoint-*"))) >= 1
    assert not list(in_memory.glob("checkpoints/checkpoint-*"))
    assert memory["training"]["best_step"] == disk["training"]["best_step"] is not None
    last_step = json.loads((in_memory / "trainer_state.json").read_text())["global_step"]
    assert memory["training"]["best_step"] < last_step
    assert memory["training"]["best_checkpoint"] is None
    expected, got = model_weights(on_disk), model_weights(in_memory)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert memory["test"] == disk["test"]
    assert (in_memory / "trainer_state.json").is_file()  # the step-by-step log survives without checkpoints

    # Nothing to resume from: a one-line error that names the way to get checkpoints.
    resume = ["training.resume_from_checkpoint=true", "training.num_train_epochs=4"]
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run("in_memory", **settings), *resume]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "training.checkpoint_minutes=0" in error
    assert read_metrics(in_memory) == memory


@pytest.mark.parametrize("strategy", ["no"])
def test_save_strategy_no_writes_nothing_but_keeps_the_best(tiny_run, tmp_path: Path, strategy: str):
    overrides = tiny_run(**{"training.save_strategy": strategy, "training.checkpoint_minutes": 0})
    assert main(["train", "--config", "configs/smoke.yaml", *overrides]) == 0
    metrics = assert_finished_run(tmp_path / "run")
    assert not list((tmp_path / "run").glob("checkpoints/checkpoint-*"))  # config.yaml says no: none written
    assert metrics["training"]["best_step"] is not None


def test_gate_runs_before_later_callbacks_so_they_can_still_force_a_save(tmp_path: Path):
    """A callback added later (e.g. one that checkpoints on SIGTERM) gets its save even inside the gate's minutes."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    from pipeline.config import TrainingConfig
    from pipeline.train.trainer import add_checkpoint_policy

    from .conftest import TINY_GPT2

    class ForceSave(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_save = True

    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(**TINY_GPT2, num_labels=2))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="loss",
    )
    one_row = datasets.Dataset.from_dict({"input_ids": [[1]], "label": [0]})
    trainer = Trainer(model=model, args=args, eval_dataset=one_row)
    add_checkpoint_policy(trainer, TrainingConfig())  # checkpoint_minutes=10: epoch saves are held back

    def epoch_end_saves() -> bool:
        control = TrainerControl()
        return trainer.callback_handler.on_epoch_end(args, trainer.state, control).should_save

    assert epoch_end_saves() is False
    trainer.add_callback(ForceSave())
    assert epoch_end_saves() is True
    names = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    assert names.index("CheckpointGate") == names.index("DefaultFlowCallback") + 1
    assert "KeepBestWeights" in names
