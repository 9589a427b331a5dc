"""The run directory: its layout, the check before a run starts, and what produced it (environment).

Layout::

    <output.dir>/
      config.yaml          resolved config (reproduce with --config <output.dir>/config.yaml)
      data/                train.csv, validation.csv, test.csv, summary.json
      checkpoints/         Trainer checkpoints (resume with training.resume_from_checkpoint=true)
      model/               the exported model folder (see pipeline.export.folder), ready for predict/serve/push
      metrics.json         train / validation / test metrics; written last, so it marks a finished run
      report.md, plots/    the readable report and its figures
      environment.json     library versions, hardware, processes, timings
      INTERRUPTED          only after SIGINT/SIGTERM stopped training: what stopped it and how to resume;
                           removed when the run finishes
"""

from __future__ import annotations

import os
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import TrainingError
from pipeline.fileio import write_atomic

RESUME_FLAG = "training.resume_from_checkpoint=true"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


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
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def predictions(self) -> Path:
        """``<split>.csv`` per scored split: every row's text, label, decision and class probabilities."""
        return self.root / "predictions"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def interrupted(self) -> Path:
        return self.root / "INTERRUPTED"

    def checkpoint_dirs(self) -> list[Path]:
        """The Trainer's ``checkpoint-<step>`` folders, oldest step first (complete or not)."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _CHECKPOINT.match(p.name))]
        return [p for _, p in sorted(found) if p.is_dir()]

    @classmethod
    def containing(cls, model_dir: Path) -> RunDir | None:
        """The run a model folder sits in (``<run>/model``, or a merge beside it), or None outside any run."""
        run = cls(Path(model_dir).parent)
        return run if run.config.is_file() else None


def check_run_dir(root: Path, *, overwrite: bool, resume: bool) -> RunDir:
    """Refuse to silently mix a new run into a finished one; nothing is created here."""
    run = RunDir(root.expanduser())
    if run.root.exists() and not run.root.is_dir():
        raise TrainingError(f"output.dir {run.root} is a file; choose another output.dir=DIR")
    if run.metrics.exists() and not (overwrite or resume):
        raise TrainingError(
            f"output.dir {run.root} already holds a finished run; choose another output.dir=DIR, "
            "or pass output.overwrite=true to replace it"
        )
    checkpoints = run.checkpoint_dirs()
    if checkpoints and not run.metrics.exists() and not (overwrite or resume):
        # An interrupted run: starting over here would mix two runs and rotate its checkpoints away.
        raise TrainingError(
            f"output.dir {run.root} holds an unfinished run (checkpoints up to {checkpoints[-1].name}, no "
            f"metrics.json); continue it with {RESUME_FLAG}, or start over with output.overwrite=true"
        )
    return run


def clear_previous_run(run: RunDir) -> None:
    """``output.overwrite=true`` without resume: drop the old run's checkpoints and end markers before training.

    Only what a run writes and a new run would not replace as a whole: old checkpoints would otherwise mix with
    the new ones (and a later resume could pick one of them); the old ``metrics.json`` and ``INTERRUPTED`` would
    describe a run that no longer exists, and old ``predictions/`` files of splits it does not score would stay.
    Everything else is rewritten by the new run.
    """
    shutil.rmtree(run.checkpoints, ignore_errors=True)
    shutil.rmtree(run.predictions, ignore_errors=True)  # the new run may score other splits
    for marker in (run.metrics, run.interrupted):
        marker.unlink(missing_ok=True)


def mark_interrupted(run: RunDir, message: str) -> None:
    """Leave ``INTERRUPTED`` in the run dir: what stopped the run and how to continue it."""
    write_atomic(run.interrupted, message + "\n")


def clear_interrupted(run: RunDir) -> None:
    run.interrupted.unlink(missing_ok=True)


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import evaluate
    import peft
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "evaluate": evaluate.__version__,
    }


def environment_info() -> dict[str, Any]:
    """Versions and hardware, so a reader of a run knows what produced it."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": library_versions(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info
