"""What computes the logits of a padded batch: torch (CPU or CUDA) or ONNX Runtime (CPU, the folder's ``model.onnx``).

Both take the same int64 numpy arrays ``input_ids`` and ``attention_mask`` (``[batch, tokens]``) and return float32
logits ``[batch, num_labels]``, so :class:`~pipeline.serve.classifier.Classifier` tokenizes, sorts by length and
cuts batches the same way whichever runs. ``onnxruntime`` is imported only when its backend is chosen, and nothing
here imports the ONNX exporter (``torch.onnx``, ``onnx``): serving needs neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import ModelFolderError, ServeError, one_line
from pipeline.export.folder import onnx_model_path
from pipeline.serve.batch_plan import resolve_device
from pipeline.serve.settings import BACKENDS, DTYPES, check_choice

ONNX_INPUTS = ("input_ids", "attention_mask")
ONNX_OUTPUT = "logits"


def prepare_backend(backend: str, device: str | None, model_dir: Path) -> torch.device:
    """The device ``backend`` runs on, after checking all that can fail before a model loads: the backend's name,
    the device, and for onnxruntime the package and the folder's ``model.onnx``."""
    check_choice("backend", backend, BACKENDS)
    if backend == "torch":
        return resolve_device(device)
    resolved = torch.device("cpu") if device in (None, "", "auto") else resolve_device(device)  # auto: where it runs
    if resolved.type != "cpu":
        raise ServeError(
            f"--backend onnxruntime runs on CPU; drop --device {device} (or pass --device cpu), "
            "or use --backend torch for the GPU"
        )
    onnx_model_path(model_dir)
    import_onnxruntime()
    return resolved


def resolve_dtype(dtype: str | None, backend: str) -> torch.dtype | None:
    """The dtype to cast the model to, or None to keep it as saved (float32 weights; a QLoRA base stays 4-bit).

    Half precision is a choice, not the default, because it did not pay for this model size: on an H200
    (bench/serve_speed.py --device cuda --dtypes float32 bfloat16, GPT-2 small, 5,574 messages, 2026-11-26),
    bfloat16 served length-sorted batches of 64 at 0.92x float32's rate and single messages at 0.80x, and moved
    probabilities by up to 0.008 (batches of 128 were no faster than 32 either: the limit there is not matmul
    throughput).
    It halves the weights' memory, which matters for models near a GPU's size. On a CPU with AVX512-BF16 it does
    pay (2 AMD EPYC cores: 2.0x float32's batched rate, 1.95x one at a time) but moves answers: 28 of 5,574
    decisions of a SmolLM2-135M classifier changed (bench/dtype_agreement.py), so it stays opt-in there too.
    """
    if dtype is None:
        return None
    check_choice("dtype", dtype, DTYPES)
    if backend == "onnxruntime" and dtype != "float32":
        raise ServeError(f"--backend onnxruntime runs the float32 model.onnx; drop --dtype {dtype} or use torch")
    return getattr(torch, dtype)


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ServeError(
            "--backend onnxruntime needs the onnxruntime package (not installed): pip install 'spam-tune[onnx]'"
        ) from None
    return onnxruntime


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device

    @property
    def dtype(self) -> str | None:
        return next((str(p.dtype).removeprefix("torch.") for p in self.model.parameters()), None)

    @torch.inference_mode()
    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        batch = {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(attention_mask).to(self.device),
        }
        return self.model(**batch).logits.float().cpu().numpy()


class OnnxRuntimeBackend:
    """An ``onnxruntime.InferenceSession`` on the CPU execution provider, as many threads as torch would use."""

    name = "onnxruntime"
    dtype = "float32"  # export --onnx always writes a float32 graph

    def __init__(self, path: Path) -> None:
        ort = import_onnxruntime()
        try:
            self.session = ort.InferenceSession(str(path), session_options(ort), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's errors share no public base class: a corrupt or foreign file
            raise ModelFolderError(
                f"ONNX Runtime cannot load {path} ({one_line(err)}); re-export it with "
                f"spam-tune export {path.parent} --onnx"
            ) from None
        names = tuple(i.name for i in self.session.get_inputs())
        if sorted(names) != sorted(ONNX_INPUTS) or ONNX_OUTPUT not in [o.name for o in self.session.get_outputs()]:
            raise ModelFolderError(
                f"{path} takes {', '.join(names)} and is not a spam-tune export (input_ids, attention_mask -> "
                f"logits); re-export it with spam-tune export {path.parent} --onnx"
            )

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        arrays = (input_ids, attention_mask)
        feed = {name: array.astype(np.int64, copy=False) for name, array in zip(ONNX_INPUTS, arrays, strict=True)}
        return self.session.run([ONNX_OUTPUT], feed)[0].astype(np.float32, copy=False)


def session_options(ort: Any) -> Any:
    options = ort.SessionOptions()
    # The same thread count as the torch backend, so the two compare like for like and a server started with
    # OMP_NUM_THREADS / torch settings for a shared machine keeps them.
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # ONNX Runtime's own thread pool spin-waits like OpenMP's; on a machine shared with other busy processes the
    # README asks for OMP_WAIT_POLICY=PASSIVE, and that setting should calm both backends, not only torch.
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings would break the CLI's one-line error contract
    return options
