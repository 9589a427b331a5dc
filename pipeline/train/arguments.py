"""``transformers.TrainingArguments`` from the config: our keys keep TrainingArguments' names, so this is mostly
a pass-through plus the choices that depend on the machine (precision, CPU, pinned memory)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch
from transformers import TrainingArguments

from pipeline.config import RunConfig, TrainingConfig
from pipeline.errors import TrainingError
from pipeline.rundir import RunDir

# Our own knobs that are not TrainingArguments fields.
_NOT_TRAINING_ARGS = {
    "early_stopping_patience",
    "resume_from_checkpoint",
    "extra_args",
    "bf16",
    "fp16",
    "tf32",
    "checkpoint_minutes",
    "train_batch_tokens",
}


def resolve_precision(training: TrainingConfig) -> tuple[bool, bool]:
    """(bf16, fp16): ``auto`` picks bf16 on GPUs that have it, fp16 on older GPUs, neither on CPU."""
    cuda = torch.cuda.is_available() and not training.use_cpu
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    bf16 = bf16_ok if training.bf16 == "auto" else bool(training.bf16)
    fp16 = (cuda and not bf16_ok) if training.fp16 == "auto" else bool(training.fp16)
    if fp16 and not cuda:
        raise TrainingError(
            "training.fp16=true needs a CUDA GPU (none is used here); drop it (CPU trains in fp32, or bf16 with "
            "training.bf16=true)"
        )
    return bf16, fp16


def resolve_tf32(training: TrainingConfig) -> bool | None:
    """``auto``: TF32 matmuls where the GPU has them (Ampere+); None leaves torch's setting alone (CPU)."""
    from transformers.utils import is_torch_tf32_available

    available = torch.cuda.is_available() and not training.use_cpu and is_torch_tf32_available()
    if training.tf32 == "auto":
        return True if available else None
    if training.tf32 and not available:
        raise TrainingError("training.tf32=true needs an NVIDIA Ampere or newer GPU; use training.tf32=auto")
    return training.tf32


def check_launcher(use_cpu: bool, launcher_env: Mapping[str, str]) -> None:
    """Refuse launcher settings that would silently do something else on this machine.

    accelerate (1.15) turns FSDP on only for GPU-like devices: CPU processes started with an FSDP config
    would quietly train as plain DDP, each holding the whole model.
    """
    if use_cpu and launcher_env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        raise TrainingError(
            "the launcher config asks for FSDP, which accelerate runs on GPUs only (CPU processes would quietly "
            "run DDP); on CPU use configs/accelerate/multi_gpu.yaml or --num_processes N --cpu"
        )


def build_training_arguments(cfg: RunConfig, run: RunDir) -> TrainingArguments:
    training = cfg.training
    bf16, fp16 = resolve_precision(training)
    own = {f.name: getattr(training, f.name) for f in dataclasses.fields(training) if f.name not in _NOT_TRAINING_ARGS}
    own["tf32"] = resolve_tf32(training)
    accelerator = torch.cuda.is_available() or torch.backends.mps.is_available()
    # Without an accelerator, say so: accelerate then sets up DDP over gloo when several processes run
    # (otherwise each process would train alone and they would overwrite each other's files).
    own["use_cpu"] = training.use_cpu or not accelerator
    check_launcher(own["use_cpu"], os.environ)
    own["dataloader_pin_memory"] = torch.cuda.is_available() and not own["use_cpu"]
    if own["dataloader_pin_memory"]:
        # A blocking host-to-GPU copy waits for the GPU to finish every step queued before it: one more
        # per-step sync. From page-locked batches a non-blocking copy is safe and keeps the host ahead.
        own["accelerator_config"] = {"non_blocking": True}
    # Our key keeps the familiar name. transformers 5.23 renamed it activation_checkpointing (the old name
    # warns); earlier 5.x releases know only gradient_checkpointing. Non-reentrant checkpointing lets gradients
    # reach adapters behind frozen inputs and works under DDP with find_unused_parameters=False.
    checkpointing = own.pop("gradient_checkpointing")
    name = (
        "activation_checkpointing"
        if hasattr(TrainingArguments, "activation_checkpointing")
        else "gradient_checkpointing"
    )
    own[name] = checkpointing
    own[f"{name}_kwargs"] = {"use_reentrant": False} if checkpointing else None
    # transformers' NaN/inf filter tests every step's loss with a Python `if` on a device tensor: one GPU-to-host
    # sync per step, so the host cannot queue the next step while the GPU runs this one (a small model's step is
    # mostly host-side launch time). Off, a NaN loss shows in the logged loss instead of being averaged away.
    own["logging_nan_inf_filter"] = False
    if "restore_callback_states_from_checkpoint" not in training.extra_args:
        # A resumed run continues where it stopped, early-stopping patience counter included (the Trainer's
        # default would reset it, so a resumed run could train longer than an uninterrupted one).
        own["restore_callback_states_from_checkpoint"] = True
    if training.eval_strategy == "no":
        own["load_best_model_at_end"] = False
    elif training.load_best_model_at_end and training.save_strategy != "best":
        # transformers wants a save point at every evaluation to pick the best model; which of them are
        # written is CheckpointGate's decision (none for save_strategy=no), the best weights stay in memory.
        own["save_strategy"] = training.eval_strategy
    try:
        return _training_arguments(run, bf16, fp16, own, training)
    except ValueError as err:  # TrainingArguments' own consistency checks
        raise TrainingError(f"invalid training settings: {' '.join(str(err).split())}") from None


def _training_arguments(
    run: RunDir, bf16: bool, fp16: bool, own: dict[str, Any], training: TrainingConfig
) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(run.checkpoints),
        bf16=bf16,
        fp16=fp16,
        # Frozen parameters (last_blocks, LoRA, QLoRA) have requires_grad=False and DDP skips them; every
        # trainable parameter gets a gradient each step in all modes, with or without activation
        # checkpointing, so the costly unused-parameter search stays off (DDP would fail loudly otherwise:
        # 2-process runs in tests/test_train_e2e.py and tests/test_adapters.py).
        ddp_find_unused_parameters=False,
        **{
            # transformers (>= 4.54) multiplies the loss by the number of processes, expecting a loss summed
            # over tokens and divided by the global token count. A classifier's loss is a mean over its rows
            # (GPT-2's ignores that count), so N processes trained on an N-fold loss and logged it N-fold.
            "average_tokens_across_devices": False,
            **own,
            **training.extra_args,
        },
    )
