"""Classify new texts with a saved model folder (``<run>/model``, a merged export, or its run dir)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.clean import is_unicode_text
from pipeline.data.tokenize import pad_rows
from pipeline.errors import ServeError
from pipeline.evaluation.thresholds import apply_threshold, decide_labels, sigmoid
from pipeline.export.folder import load_model_folder, load_onnx_folder, resolve_model_dir
from pipeline.serve.backends import OnnxRuntimeBackend, TorchBackend, prepare_backend, resolve_dtype
from pipeline.serve.batch_plan import measure_pass_cost, plan_batches


@dataclass
class Prediction:
    text: str
    label: str
    label_id: int
    score: float
    """Probability of the predicted label."""
    probabilities: dict[str, float]
    labels: list[str] | None = None
    """Multi-label: every label at or above its threshold (``label`` is then the most probable one)."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "text": self.text,
            "label": self.label,
            "label_id": self.label_id,
            "score": self.score,
            "probabilities": self.probabilities,
        }
        return out | ({"labels": self.labels} if self.labels is not None else {})


class Classifier:
    """Loads once, then classifies batches of texts; thread-unsafe like any torch module (and fast tokenizer).

    ``dtype`` (:func:`~pipeline.serve.backends.resolve_dtype`): None keeps the weights as saved (the probabilities
    training reported); ``"bfloat16"``/``"float16"`` halve the weights' memory at ~3 significant digits.

    ``backend="onnxruntime"`` computes the logits with the folder's ``model.onnx`` (``spam-tune export --onnx``) on
    CPU instead of the torch weights, which are then not loaded; tokenization, length sorting, batch cuts,
    decisions and errors are the same code either way.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        batch_size: int = 32,
        device: str | None = None,
        backend: str = "torch",
        dtype: str | None = None,
    ) -> None:
        self.model_dir = resolve_model_dir(model_dir)
        self.device = prepare_backend(backend, device, self.model_dir)
        self.dtype = resolve_dtype(dtype, backend)
        self.model: torch.nn.Module | None = None
        self.backend: TorchBackend | OnnxRuntimeBackend
        if backend == "onnxruntime":
            loaded_onnx = load_onnx_folder(self.model_dir)
            self.metadata, self.tokenizer = loaded_onnx.metadata, loaded_onnx.tokenizer
            self.backend = OnnxRuntimeBackend(loaded_onnx.onnx_path)
        else:
            loaded = load_model_folder(self.model_dir)
            self.metadata, self.tokenizer, self.model = loaded.metadata, loaded.tokenizer, loaded.model
            if self.model.config.pad_token_id is None:  # a plain checkpoint: the head needs it to find the last token
                self.model.config.pad_token_id = self.tokenizer.pad_token_id
            if self.dtype is None:  # as saved; no dtype argument at all (transformers refuses one for 4-bit models)
                self.model.to(self.device)
            elif self.metadata.quantization:
                raise ServeError(
                    f"{self.model_dir} is a QLoRA adapter on a 4-bit base, which cannot be cast to {dtype}; drop "
                    f"--dtype, or merge it first: spam-tune merge {self.model_dir} --out DIR"
                )
            else:
                self.model.to(self.device, dtype=self.dtype)
            self.backend = TorchBackend(self.model, self.device)
        self.batch_size = batch_size
        self.max_length = self.metadata.max_length
        self.id2label = dict(self.metadata.id2label)
        self.threshold: float | None = self.metadata.threshold
        self.positive = self.metadata.positive_label
        self.multi_label = self.metadata.is_multi_label
        saved = self.metadata.label_thresholds or {}
        self.label_thresholds: list[float] | None = (
            [float(saved.get(self.id2label[i], 0.5)) for i in sorted(self.id2label)] if self.multi_label else None
        )
        self._pass_cost: float | None = None

    def _forward_shape(self, rows: int, cols: int) -> None:
        ids = np.full((rows, cols), min(100, self.tokenizer.vocab_size - 1), dtype=np.int64)
        self.backend(ids, np.ones_like(ids))

    def pass_cost_tokens(self) -> float:
        """:func:`measure_pass_cost` for this model and machine, measured on first use."""
        if self._pass_cost is None:
            self._pass_cost = measure_pass_cost(self._forward_shape)
        return self._pass_cost

    def logits(self, texts: list[str]) -> np.ndarray:
        """Raw scores ``[n, num_labels]`` (float32), in the order of ``texts``.

        Texts are tokenized as in training (truncated to ``max_length``) and sorted by token count, so a batch
        holds texts of similar length and little compute goes to padding. On GPU, consecutive batches of
        ``batch_size``; on CPU, batches of at most ``batch_size`` cut where that saves more padding than an extra
        forward pass costs (:func:`~pipeline.serve.batch_plan.plan_batches`).
        """
        out = np.empty((len(texts), len(self.id2label)), dtype=np.float32)
        if not texts:  # the tokenizer refuses an empty batch
            return out
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        if self.device.type == "cpu" and len(order) > 1:
            cuts = plan_batches([len(encoded[i]) for i in order], self.batch_size, self.pass_cost_tokens())
        else:
            step = self.batch_size
            cuts = [(start, min(start + step, len(order))) for start in range(0, len(order), step)]
        for start, end in cuts:
            rows = order[start:end]
            batch = pad_rows(self.tokenizer, [encoded[i] for i in rows], "np", device_type=self.device.type)
            out[rows] = self.backend(batch["input_ids"], batch["attention_mask"])
        return out

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text before truncation (for callers that refuse over-long texts instead of truncating)."""
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """Class probabilities, one row per text (float32 on CPU); multi-label: one sigmoid per label."""
        return torch.from_numpy(self.to_probabilities(self.logits(texts)))

    def to_probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Logits -> what ``decide`` takes: softmax over classes, or multi-label a sigmoid per label."""
        scores = np.asarray(logits, dtype=np.float64)
        if self.multi_label:
            return sigmoid(scores).astype(np.float32)
        return torch.softmax(torch.from_numpy(scores.astype(np.float32)), dim=-1).numpy()

    def decide(self, probabilities: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class ids as the saved model decides: the threshold chosen on validation, else argmax; multi-label:
        multi-hot rows, each label against its saved threshold."""
        if self.multi_label:
            return decide_labels(np.asarray(probabilities), self.label_thresholds)
        return apply_threshold(np.asarray(probabilities), self.threshold, self.positive)

    def predict(self, texts: list[str]) -> list[Prediction]:
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ServeError(
                f"input(s) {', '.join(map(str, bad[:10]))} (0-based) are empty or not text; pass non-empty strings"
            )
        # Lone surrogates (from undecodable command-line bytes or "\ud800" JSON escapes) cannot reach the tokenizer.
        broken = [i for i, t in enumerate(texts) if not is_unicode_text(t)]
        if broken:
            raise ServeError(
                f"input(s) {', '.join(map(str, broken[:10]))} (0-based) are not valid Unicode text (lone surrogate "
                "characters); pass UTF-8 text"
            )
        probs = self.probabilities(texts)
        decisions = self.decide(probs)
        if self.multi_label:
            return [
                self._multi_label_prediction(text, row, chosen)
                for text, row, chosen in zip(texts, probs, decisions, strict=True)
            ]
        return [
            Prediction(
                text=text,
                label=self.id2label[int(label)],
                label_id=int(label),
                score=float(row[int(label)]),
                probabilities={self.id2label[i]: float(p) for i, p in enumerate(row)},
            )
            for text, row, label in zip(texts, probs, decisions, strict=True)
        ]

    def _multi_label_prediction(self, text: str, row: torch.Tensor, chosen: np.ndarray) -> Prediction:
        top = int(row.argmax())
        return Prediction(
            text=text,
            label=self.id2label[top],
            label_id=top,
            score=float(row[top]),
            probabilities={self.id2label[i]: float(p) for i, p in enumerate(row)},
            labels=[self.id2label[i] for i in np.flatnonzero(chosen)],
        )
