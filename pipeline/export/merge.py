"""``spam-tune merge``: fold a LoRA/QLoRA folder's adapter into its base and export a standalone model folder."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from pipeline.config import load_config
from pipeline.errors import ModelFolderError
from pipeline.export.folder import (
    CARD,
    METRICS,
    TRAINING_CONFIG,
    is_adapter_folder,
    load_model_folder,
    resolve_model_dir,
    write_model_folder,
)
from pipeline.export.modelcard import model_card
from pipeline.fileio import read_json
from pipeline.model import DTYPES
from pipeline.model.adapters import merged_model

log = logging.getLogger(__name__)

_CARRIED = ("report.md", "plots", TRAINING_CONFIG)
"""Files of the adapter folder that describe the run and stay true for the merged model."""


def merge_folder(model_dir: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Write ``out_dir``: the adapter of ``model_dir`` (a folder or its run dir) merged into its base."""
    model_dir, out_dir = resolve_model_dir(model_dir), Path(out_dir)
    if not is_adapter_folder(model_dir):
        raise ModelFolderError(
            f"{model_dir} holds no adapter (adapter_config.json); merge takes the model dir of a LoRA or "
            "QLoRA run, e.g. runs/lora/model"
        )
    if dtype not in DTYPES or dtype == "auto":
        raise ModelFolderError(f"--dtype {dtype} is not one of float32, bfloat16, float16")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ModelFolderError(f"--out {out_dir} exists and is not an empty directory; choose a new one")
    loaded = load_model_folder(model_dir)
    metadata = loaded.metadata
    merged = merged_model(loaded.model, model_dir, quantized=bool(metadata.quantization), dtype=dtype)
    merged_metadata = dataclasses.replace(
        metadata,
        base_dtype="auto",
        quantization=None,
        merged_from=str(model_dir.resolve()),
        dtype=dtype,
    )
    metrics = read_json(model_dir / METRICS)
    card = _merged_card(model_dir, metrics) or (model_dir / CARD).read_text(encoding="utf-8")
    write_model_folder(
        out_dir,
        save_weights=lambda d: merged.save_pretrained(str(d)),
        tokenizer=loaded.tokenizer,
        metadata=merged_metadata,
        card=card,
        metrics=metrics or None,
        attachments={name: model_dir / name for name in _CARRIED if (model_dir / name).exists()},
    )
    log.info("merged %s into a standalone %s model at %s", model_dir, dtype, out_dir)
    return out_dir


def _merged_card(model_dir: Path, metrics: dict) -> str | None:
    """The card of the merged model (a plain transformers model now), from the run's saved config."""
    config = model_dir / TRAINING_CONFIG
    if not config.is_file():
        return None
    return model_card(load_config(config), metrics, merged=True)
