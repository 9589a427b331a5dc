"""Scale-out through the real launcher: DDP matches one process at the same effective batch; shipped launcher
configs are valid; FSDP on CPU is refused instead of silently running DDP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from safetensors.torch import load_file

from .conftest import TINY_GPT2
from .test_train_e2e import ROOT, assert_finished_run, run_launcher

LAUNCHER_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
# Dropout off: then one process and two see the same rows per step, and only the order of float sums differs.
NO_DROPOUT = {**TINY_GPT2, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
# Measured (tiny GPT-2, toy data, 3 epochs, 1 x 12 rows vs 2 x 6 rows): largest weight difference 2.6e-6,
# largest per-epoch validation-loss difference 3e-4 (eval-loss averaging over differently cut batches),
# identical validation/test metrics. The tolerances below leave ~40x and ~7x room.
WEIGHT_TOLERANCE = 1e-4
LOSS_TOLERANCE = 2e-3


def ddp_overrides(tiny_run, out: str, batch: int) -> list[str]:
    arch = "{" + ", ".join(f"{k}: {v}" for k, v in NO_DROPOUT.items()) + "}"
    settings = {
        "model.from_config": arch,
        "training.per_device_train_batch_size": batch,
        "training.num_train_epochs": 6,
        "training.early_stopping_patience": 1,  # every rank must stop at the same epoch
    }
    return tiny_run(out, **settings)


def test_two_processes_with_half_the_batch_train_like_one(tiny_run, tmp_path: Path):
    one = run_launcher(["train.py", "--config", "configs/smoke.yaml", *ddp_overrides(tiny_run, "one", 12)])
    assert one.returncode == 0, one.stderr[-3000:]
    launch_two = ["--num_processes", "2", "--cpu", "train.py", "--config", "configs/smoke.yaml"]
    two = run_launcher([*launch_two, *ddp_overrides(tiny_run, "two", 6)])
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = assert_finished_run(tmp_path / "one"), assert_finished_run(tmp_path / "two")

    # The same effective batch, recorded where a reader looks for it.
    assert (single["training"]["processes"], double["training"]["processes"]) == (1, 2)
    assert single["training"]["effective_batch_size"] == double["training"]["effective_batch_size"] == 12
    environment = json.loads((tmp_path / "two" / "environment.json").read_text())
    assert environment["processes"] == 2 and environment["effective_batch_size"] == 12
    report = (tmp_path / "two" / "report.md").read_text(encoding="utf-8")
    assert "6 per device x 2 processes x 1 accumulation step = 12 per optimizer step" in report

    # Early stopping ended both runs at the same epoch (a rank stopping alone would hang the other).
    assert single["training"]["epoch"] == double["training"]["epoch"] < 6
    assert single["training"]["best_step"] == double["training"]["best_step"]
    for split in ("validation", "test"):
        for key, value in single[split].items():
            if isinstance(value, float):
                assert double[split][key] == pytest.approx(value, abs=1e-6), (split, key)
    assert len(single["history"]) == len(double["history"])
    pairs = zip(single["history"], double["history"], strict=True)
    losses = [(a["validation_loss"], b["validation_loss"]) for a, b in pairs]
    assert losses and all(abs(a - b) <= LOSS_TOLERANCE for a, b in losses), losses
    first, second = (load_file(str(tmp_path / name / "model" / "model.safetensors")) for name in ("one", "two"))
    assert max((first[k] - second[k]).abs().max().item() for k in first) <= WEIGHT_TOLERANCE


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_shipped_launcher_configs_load_and_are_headed_by_their_command(path: Path):
    head = path.read_text(encoding="utf-8").splitlines()
    commands = [line for line in head if line.startswith("# accelerate launch --config_file")]
    assert commands and f"configs/accelerate/{path.name}" in commands[0] and "train.py --config configs/" in commands[0]
    config = load_config_from_file(str(path))  # accelerate's own reader: unknown or mistyped keys fail here
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config.distributed_type.value == raw["distributed_type"]
    if raw["distributed_type"] == "FSDP":
        assert raw["fsdp_config"]["fsdp_reshard_after_forward"] is True  # full shard
        assert raw["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # a normal model folder at the end


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, accelerate does run FSDP")
def test_fsdp_on_cpu_is_refused_not_run_as_ddp(tiny_run, tmp_path: Path):
    """torch 2.13's FSDP2 runs on CPU over gloo, but accelerate 1.15 enables FSDP only for GPU-like devices: the
    processes would train as plain DDP under an FSDP config. The run stops with one line instead."""
    fsdp = str(ROOT / "configs" / "accelerate" / "fsdp.yaml")
    proc = run_launcher(
        ["--config_file", fsdp, "--num_processes", "2", "train.py", "--config", "configs/smoke.yaml", *tiny_run("f")]
    )
    assert proc.returncode != 0
    errors = {line for line in proc.stderr.splitlines() if line.startswith("error: ")}
    assert len(errors) == 1 and "FSDP" in next(iter(errors)) and "multi_gpu.yaml" in next(iter(errors))
    assert not (tmp_path / "f").exists()
