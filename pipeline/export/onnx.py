"""``spam-tune export MODEL_DIR --onnx``: add ``model.onnx`` to a full or merged model folder, for ONNX Runtime.

The graph takes what :class:`pipeline.serve.classifier.Classifier` feeds its torch model, ``input_ids`` and
``attention_mask`` (int64, ``[batch, tokens]``, both axes dynamic), and returns ``logits`` (float32,
``[batch, num_labels]``), so ``serve --backend onnxruntime`` keeps the same tokenization, length sorting and batch
cuts. It is traced by ``torch.onnx.export``'s TorchScript exporter (the dynamo exporter needs onnxscript and has
not been measured here), always in float32: ONNX Runtime's CPU kernels are float32 ones, so a bfloat16 merge is
exported as its float32 upcast.

A trace records one run of Python code, so before anything is published ONNX Runtime runs the graph on batches of
other shapes than the traced one and its logits must match torch's within :data:`MAX_LOGIT_DIFF`. The folder is
rebuilt in a hidden sibling (a copy, ``model.onnx``, metadata that records the export) and swapped in whole, so a
failed export leaves the folder as it was.

Adapter (LoRA/QLoRA) folders are refused, naming ``spam-tune merge``: the ONNX file is the folder's weights in
another format, and an adapter folder's weights are not a standalone model.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.tokenize import pad_rows
from pipeline.errors import ExportError, ModelFolderError, one_line
from pipeline.export.folder import (
    ONNX_FILE,
    LoadedModel,
    copy_folder,
    load_model_folder,
    refuse_adapter_for_onnx,
    resolve_model_dir,
)

log = logging.getLogger(__name__)

OPSET = 17
"""Opset of the TorchScript exporter's GPT-2 graph (LayerNormalization is native from 17); ONNX Runtime >= 1.17
runs it."""
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "logits"
MAX_LOGIT_DIFF = 1e-4
"""Largest logit difference from torch that an export may show on the check batches; faithful exports of GPT-2
small measure ~2e-6, a broken one (e.g. traced with dropout on) ~1e-1."""
TRACE_TEXTS = ("WINNER!! Claim your free prize now, reply WIN to 80086 today", "see you at 6?")
"""Traced as one padded batch, so the trace takes the attention mask's general path: with an all-ones mask a model
may skip masking, and the trace would bake that in."""
CHECK_TEXTS = ("ok", "are we still meeting for lunch at 12, or later?", "FREE entry! Reply YES", "call me")
"""Checked as one batch of another shape, and one at a time (batch 1) as a lone client sends them."""


def export_onnx(model_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``model.onnx`` into ``model_dir`` (a full or merged folder, or its run dir), or into a copy at
    ``out_dir``; returns the folder that holds it."""
    model_dir = resolve_model_dir(model_dir)
    refuse_adapter_for_onnx(model_dir)
    out = _output_dir(model_dir, out_dir)
    _require_exporter()
    loaded = load_model_folder(model_dir)
    model = _float32_classifier(loaded)
    trace_batch = encode(loaded, TRACE_TEXTS)
    checks = [encode(loaded, CHECK_TEXTS), *(encode(loaded, [text]) for text in CHECK_TEXTS)]
    measured: list[float] = []

    def add_onnx(folder: Path) -> None:
        path = folder / ONNX_FILE
        trace_to_onnx(model, trace_batch, path)
        diff = max_logit_difference(model, path, [trace_batch, *checks])
        measured.append(diff)
        if not diff <= MAX_LOGIT_DIFF:  # `not <=`: a NaN difference fails too
            raise ExportError(
                f"the ONNX graph of {model_dir} gives logits {diff:.2g} away from torch's (allowed "
                f"{MAX_LOGIT_DIFF:g}); this model does not export faithfully, serve it with --backend torch"
            )
        dataclasses.replace(loaded.metadata, onnx=_export_record(diff)).write(folder)

    copy_folder(model_dir, out, skip=(ONNX_FILE,), add=add_onnx)
    log.info("wrote %s (logits within %.1g of torch's)", out / ONNX_FILE, measured[0])
    return out


def _output_dir(model_dir: Path, out_dir: str | Path | None) -> Path:
    """``model_dir`` itself (rewritten in place), or a new/empty ``out_dir`` outside it."""
    if out_dir is None or Path(out_dir).expanduser().resolve() == model_dir.resolve():
        return model_dir
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelFolderError(
            f"--out {out} exists and is not an empty directory; choose a new one, or omit --out to add "
            f"{ONNX_FILE} to {model_dir}"
        )
    if out.resolve().is_relative_to(model_dir.resolve()):
        raise ModelFolderError(f"--out {out} is inside {model_dir}, which it copies; choose a folder outside")
    return out


def _require_exporter() -> None:
    """torch.onnx.export writes through the onnx package; the check after it runs ONNX Runtime."""
    missing = [name for name in ("onnx", "onnxruntime") if not _importable(name)]
    if missing:
        raise ExportError(
            f"spam-tune export --onnx needs {' and '.join(missing)} (not installed): pip install 'spam-tune[onnx]'"
        )


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _float32_classifier(loaded: LoadedModel) -> torch.nn.Module:
    model = loaded.model.float().eval()
    if model.config.pad_token_id is None:  # as the classifier does: the head finds each row's last token by it
        model.config.pad_token_id = loaded.tokenizer.pad_token_id
    return model


def encode(loaded: LoadedModel, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """``texts`` as the classifier batches them on CPU, where ONNX Runtime serves (truncated to the model's max
    length, then :func:`pad_rows`), so the checked shapes are the ones served."""
    ids = loaded.tokenizer(list(texts), truncation=True, max_length=loaded.metadata.max_length)["input_ids"]
    batch = pad_rows(loaded.tokenizer, ids, "pt", device_type="cpu")
    return {name: batch[name] for name in INPUTS}


class _LogitsOnly(torch.nn.Module):
    """``(input_ids, attention_mask) -> logits``: the graph's whole interface, no cache outputs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # By keyword: GPT-2's second positional argument is past_key_values.
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def trace_to_onnx(model: torch.nn.Module, batch: dict[str, torch.Tensor], path: Path) -> None:
    import torch.onnx  # only here: serving with ONNX Runtime never loads the exporter

    # .eval() on the wrapper too: a new Module starts in training mode, and export puts back the mode it found,
    # recursively, which would leave the model's dropout on (measured: logits 0.1 off afterwards).
    wrapper = _LogitsOnly(model).eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS} | {OUTPUT: {0: "batch"}}
    try:
        with warnings.catch_warnings():
            # TracerWarnings about shape-dependent Python branches: the check against torch decides if they matter.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(batch[name] for name in INPUTS),
                str(path),
                input_names=list(INPUTS),
                output_names=[OUTPUT],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except (RuntimeError, TypeError, ValueError) as err:  # the exporter's own failures: an unsupported operator
        raise ExportError(f"torch.onnx.export failed on this model ({one_line(err)})") from None


def max_logit_difference(model: torch.nn.Module, path: Path, batches: list[dict[str, torch.Tensor]]) -> float:
    """The largest ``|logit(torch) - logit(ONNX Runtime)|`` over ``batches``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.inference_mode():
        for batch in batches:
            expected = model(**batch).logits.float().numpy()
            got = session.run([OUTPUT], {name: batch[name].numpy() for name in INPUTS})[0]
            worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def _export_record(diff: float) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "file": ONNX_FILE,
        "opset": OPSET,
        "dtype": "float32",
        "exporter": f"torch.onnx TorchScript exporter, torch {torch.__version__}",
        "checked_with": f"onnxruntime {ort.__version__}",
        "max_abs_logit_diff": diff,
    }
