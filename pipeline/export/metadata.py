"""``spam_tune.json``: what a model folder needs beside its weights, typed, read and written only here.

A plain transformers checkpoint has none and still loads (labels from ``config.json``, argmax decisions);
a spam-tune folder adds the decision threshold chosen on validation, the max length used in training, and
for an adapter how to rebuild its base.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ModelFolderError
from pipeline.fileio import read_json, write_json

FILENAME = "spam_tune.json"
FORMAT_VERSION = 1
BASE_DIR = "base"
"""Sub-folder of an adapter folder holding its base when the base has no name to reload it by (random init)."""


@dataclass
class ModelMetadata:
    """Everything :class:`pipeline.serve.Classifier` needs beside the weights and tokenizer."""

    id2label: dict[int, str]
    positive_label: int = 1
    """Class whose probability the threshold applies to (spam)."""
    threshold: float | None = None
    """Positive when p(positive) >= threshold; None = argmax."""
    threshold_strategy: str = "argmax"
    problem_type: str = "single_label_classification"
    """``multi_label_classification``: one sigmoid per label, each decided by its own ``label_thresholds`` entry."""
    label_thresholds: dict[str, float] | None = None
    """Multi-label: label -> threshold (label on when its sigmoid >= threshold), in id order."""
    max_length: int = 256
    """Texts are truncated to this many tokens, as in training."""
    mode: str = "full"
    """How it was trained: full | last_blocks | lora | qlora; a merged adapter keeps its mode, see ``merged_from``."""
    base_model: str | None = None
    """Where the starting weights came from (Hub id or absolute path); None for random init."""
    base_dtype: str = "auto"
    """Adapters: the dtype the frozen base was loaded in."""
    quantization: dict[str, Any] | None = None
    """QLoRA adapters: the 4-bit settings (quant_type, double_quant, compute_dtype) that rebuild the same base."""
    pad_token_id: int | None = None
    merged_from: str | None = None
    """Set on a merged model: the adapter folder it was merged from."""
    dtype: str | None = None
    """Set on a merged model: the dtype it was saved in."""
    onnx: dict[str, Any] | None = None
    """Set by ``spam-tune export --onnx``: how the folder's ``model.onnx`` was made (opset, dtype, torch version, the
    largest logit difference from torch measured at export). Whether the file is there is read from the folder."""
    training: dict[str, Any] = field(default_factory=dict)
    """Summary of the run that produced it: epochs, steps, best checkpoint, test accuracy/F1, processes."""
    versions: dict[str, str] = field(default_factory=dict)
    """Library versions at training time."""
    format_version: int = FORMAT_VERSION

    @property
    def is_multi_label(self) -> bool:
        return self.problem_type == "multi_label_classification"

    @property
    def is_adapter(self) -> bool:
        return self.mode in ("lora", "qlora") and self.merged_from is None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}  # JSON keys are strings
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: Path) -> ModelMetadata:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}  # newer files may carry more keys
        try:
            values["id2label"] = {int(k): str(v) for k, v in (raw.get("id2label") or {}).items()}
            metadata = cls(**values)
        except (TypeError, ValueError) as err:
            raise ModelFolderError(f"{where} is not a valid {FILENAME} ({err}); re-export the model") from None
        if not metadata.id2label:
            raise ModelFolderError(f"{where} has no id2label; re-export the model")
        return metadata

    def write(self, folder: Path) -> Path:
        path = Path(folder) / FILENAME
        write_json(path, self.to_json())
        return path

    @classmethod
    def read(cls, folder: Path) -> ModelMetadata | None:
        """The folder's metadata; None for a plain transformers checkpoint (no ``spam_tune.json``)."""
        path = Path(folder) / FILENAME
        if not path.is_file():
            return None
        try:
            raw = read_json(path)
        except ValueError:
            raise ModelFolderError(f"{path} is not valid JSON; re-export the model") from None
        return cls.from_json(raw, path)
