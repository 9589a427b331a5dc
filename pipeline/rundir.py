"""The run directory: its layout, the checks before it is created, and atomic writes into it.

Layout::

    <output.dir>/
      config.yaml          resolved config (reproduce with --config <output.dir>/config.yaml)
      data/                train.csv, validation.csv, test.csv, summary.json
      checkpoints/         Trainer checkpoints (resume with training.resume_from_checkpoint=true)
      model/               final model (or adapter) + tokenizer + spam_tune.json, ready for predict/serve
      metrics.json         train / validation / test metrics
      environment.json     library versions, hardware, timings
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import SpamTuneError
from pipeline.fileio import read_json, write_atomic, write_json

__all__ = [
    "MODEL_METADATA",
    "RunDir",
    "check_run_dir",
    "environment_info",
    "read_model_metadata",
    "write_json",
    "write_text_atomic",
]

MODEL_METADATA = "spam_tune.json"
"""Beside a saved model: mode, labels, max_length, decision threshold, and how to rebuild an adapter's base."""


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"


def check_run_dir(root: Path, *, overwrite: bool, resume: bool) -> RunDir:
    """Refuse to silently mix a new run into a finished one; nothing is created here."""
    run = RunDir(root.expanduser())
    if run.root.exists() and not run.root.is_dir():
        raise SpamTuneError(f"output.dir {run.root} is a file; choose another output.dir=DIR")
    if run.metrics.exists() and not (overwrite or resume):
        raise SpamTuneError(
            f"output.dir {run.root} already holds a finished run; choose another output.dir=DIR, "
            "or pass output.overwrite=true to replace it"
        )
    return run


def read_model_metadata(model_dir: Path) -> dict[str, Any]:
    """The model dir's ``spam_tune.json``; ``{}`` for a plain transformers checkpoint."""
    return read_json(Path(model_dir) / MODEL_METADATA)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, text)


def environment_info() -> dict[str, Any]:
    """Versions and hardware, so a reader of a run knows what produced it."""
    import accelerate
    import datasets
    import evaluate
    import peft
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
            "peft": peft.__version__,
            "accelerate": accelerate.__version__,
            "evaluate": evaluate.__version__,
        },
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info
