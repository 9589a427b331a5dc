"""Training steps queue GPU work without waiting for it: no device-to-host sync between logging steps.

A GPT-2 small step on a GPU is mostly host-side launch time; the host can queue step N+1 while the GPU runs step N
only if nothing in a step reads a GPU value back (a Python ``if`` on a loss tensor, a blocking host-to-GPU copy).

One read-back per forward pass stays, inside transformers: its attention-mask builder (``masking_utils``) asks
whether a batch has any padding (``padding_mask.all()``) to pick SDPA's mask-free causal kernel. Measured on an H100
(transformers 5.17): 2 per step, all from masking_utils.py. Avoiding it would mean handing the model a prebuilt 4-D
mask, which bypasses each architecture's own mask rules (sliding windows, chunked attention); not done.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from pipeline.config import load_config
from pipeline.rundir import RunDir
from pipeline.train import trainer as trainer_module
from pipeline.train.arguments import build_training_arguments
from tests.conftest import train_keeping_model

REPO = Path(__file__).resolve().parents[1]
TRANSFORMERS_MASK_CHECK = "masking_utils.py:"
"""Where transformers' does-this-batch-have-padding check reads back (see the module docstring)."""
SHIPPED = sorted(path.stem for path in (REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_skip_the_per_step_loss_check(name: str, tmp_path: Path) -> None:
    args = build_training_arguments(load_config(REPO / "configs" / f"{name}.yaml", []), RunDir(tmp_path))
    assert args.logging_nan_inf_filter is False
    # Page-locked batches and non-blocking copies go together, on a GPU only.
    assert args.dataloader_pin_memory == torch.cuda.is_available()
    assert args.accelerator_config.non_blocking == args.dataloader_pin_memory


class SyncWatch(TrainerCallback):
    """Torch's sync debugging on from the start of step 2 to the end of step ``last``, recording where it fires.

    Step 1 pays one-time set-up; the epoch end (timing, the train-subset evaluation) and the end of training read
    values back on purpose, so the window closes at the end of a step, before the Trainer's own bookkeeping.
    """

    def __init__(self, last: int) -> None:
        self.last = last
        self.reports: list[str] = []
        self.started = False
        self._catcher: warnings.catch_warnings | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 1 and not self.started:
            self.started = True
            self._catcher = warnings.catch_warnings(record=True)
            self._caught = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.last and self._catcher is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._catcher.__exit__(None, None, None)
            self._catcher = None
            self.reports = [
                f"{Path(w.filename).name}:{w.lineno}"
                for w in self._caught
                if "called a synchronizing CUDA operation" in str(w.message)
            ]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_steps_do_not_sync(tiny_run, monkeypatch: pytest.MonkeyPatch) -> None:
    watch = SyncWatch(last=5)
    build = trainer_module.build_trainer

    def with_watch(*args, **kwargs):
        built = build(*args, **kwargs)
        built.add_callback(watch)
        return built

    monkeypatch.setattr("pipeline.commands.train.build_trainer", with_watch)
    # No logging, evaluation or checkpoint inside the watched steps: those read values back on purpose.
    overrides = tiny_run(
        **{
            "training.logging_steps": 10_000,
            "training.eval_strategy": "no",
            "training.save_strategy": "no",
            "training.early_stopping_patience": "null",
            "training.max_steps": 6,
            "evaluation.epoch_train_rows": 0,
            "evaluation.plots": False,
            "evaluation.report": False,
        }
    )
    train_keeping_model(REPO / "configs" / "full.yaml", overrides, monkeypatch)
    assert watch.started and watch._catcher is None, "the watch did not cover steps 2 to 5"
    ours = [where for where in watch.reports if not where.startswith(TRANSFORMERS_MASK_CHECK)]
    assert ours == [], f"GPU syncs inside training steps, at {ours}"
