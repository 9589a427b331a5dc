"""Classify new texts with a saved model directory (``<run>/model`` or a merged export)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from pipeline.errors import SpamTuneError
from pipeline.rundir import read_model_metadata
from pipeline.thresholds import apply_threshold

# Prediction is loaded by the HTTP server and by `predict --file`: it must not import the training stack
# (datasets, evaluate, sklearn, matplotlib, transformers.Trainer). tests/serve/test_imports.py checks it.
PAD_TO_MULTIPLE_OF = 8
"""Same padding as the training collator: tensor-core friendly shapes on GPU, free on CPU."""


@dataclass
class Prediction:
    text: str
    label: str
    label_id: int
    score: float
    """Probability of the predicted label."""
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "label": self.label,
            "label_id": self.label_id,
            "score": self.score,
            "probabilities": self.probabilities,
        }


def existing_model_metadata(model_dir: Path) -> dict[str, Any]:
    if not model_dir.is_dir():
        raise SpamTuneError(f"model dir {model_dir} not found; pass a run's model dir, e.g. runs/lora/model")
    return read_model_metadata(model_dir)  # {} for a plain transformers checkpoint, which works too


def ready_to_pad(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Pad with EOS on the right when the tokenizer has no pad token (the rule of
    ``pipeline.tokenize.with_pad_token``, repeated here because that module imports ``datasets``)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise SpamTuneError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # *ForSequenceClassification pools the last non-pad token
    return tokenizer


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"``: CUDA when there is one, else CPU; anything else must name a usable device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise SpamTuneError(f"unknown device {device!r}; pass auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SpamTuneError(f"device {device!r} asked for, but torch sees no CUDA GPU; pass --device cpu")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise SpamTuneError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPU(s)); pass cuda:0")
    return resolved


def plan_batches(lengths: list[int], max_batch: int, pass_cost: float) -> list[tuple[int, int]]:
    """Cut ascending ``lengths`` into consecutive ``[start, end)`` batches of at most ``max_batch`` rows that
    minimise padded tokens plus ``pass_cost`` per batch (dynamic programming: optimal, O(n * max_batch))."""
    best = [0.0] + [float("inf")] * len(lengths)
    start_of = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        for start in range(max(0, end - max_batch), end):
            cost = best[start] + pass_cost + (end - start) * lengths[end - 1]  # padded to the longest, the last
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    cuts, end = [], len(lengths)
    while end > 0:
        cuts.append((start_of[end], end))
        end = start_of[end]
    return cuts[::-1]


def measure_pass_cost(forward: Callable[[int, int], object], small: int = 8, large: int = 128) -> float:
    """How many padded tokens one more forward pass costs: ``(fixed cost of a pass) / (cost of one token)``.

    Timed on ``forward(rows, tokens_per_row)`` at 1 x ``small`` and 4 x ``large // 4`` tokens (median of 3,
    after a warm-up). On CPU a GPT-2 small pass costs a few tokens (compute dominates: cut batches finely),
    a 2-block toy model hundreds (overheads dominate: keep batches whole). Clipped to [1, 4096].
    """

    def timed(rows: int, cols: int) -> float:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            forward(rows, cols)
            runs.append(time.perf_counter() - started)
        return sorted(runs)[1]

    forward(1, small)
    t_small, t_large = timed(1, small), timed(4, large // 4)
    per_token = (t_large - t_small) / (large - small)
    if per_token <= 0:  # timing noise: treat passes as expensive, i.e. keep batches whole
        return 4096.0
    return float(min(4096.0, max(1.0, (t_small - small * per_token) / per_token)))


def load_model_dir(model_dir: Path) -> PreTrainedModel:
    """A full checkpoint or a peft adapter dir, ready for inference (eval mode)."""
    if (model_dir / "adapter_config.json").is_file():
        from pipeline.adapters import load_adapter_model

        model = load_adapter_model(model_dir)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    return model.eval()


class Classifier:
    """Loads once, then classifies batches of texts; thread-unsafe like any torch module."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 32, device: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.metadata = existing_model_metadata(self.model_dir)
        self.device = resolve_device(device)
        self.tokenizer = ready_to_pad(AutoTokenizer.from_pretrained(str(self.model_dir)))
        self.model = load_model_dir(self.model_dir)
        if self.model.config.pad_token_id is None:  # a plain checkpoint: the head needs it to find the last token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device)
        self.batch_size = batch_size
        self.max_length = int(self.metadata.get("max_length", 256))
        config = self.model.config
        self.id2label = {int(k): v for k, v in config.id2label.items()}
        self.threshold: float | None = self.metadata.get("threshold")
        self.positive = int(self.metadata.get("positive_label", 1))
        self._pass_cost: float | None = None

    @torch.inference_mode()
    def _forward_shape(self, rows: int, cols: int) -> None:
        ids = torch.full((rows, cols), min(100, self.tokenizer.vocab_size - 1), device=self.device)
        self.model(input_ids=ids, attention_mask=torch.ones_like(ids))

    def pass_cost_tokens(self) -> float:
        """:func:`measure_pass_cost` for this model and machine, measured on first use."""
        if self._pass_cost is None:
            self._pass_cost = measure_pass_cost(self._forward_shape)
        return self._pass_cost

    @torch.inference_mode()
    def logits(self, texts: list[str]) -> np.ndarray:
        """Raw scores ``[n, num_labels]`` (float32), in the order of ``texts``.

        Texts are tokenized as in training (truncated to ``max_length``) and sorted by token count, so a batch
        holds texts of similar length and little compute goes to padding. On GPU, consecutive batches of
        ``batch_size``; on CPU, where every padded token costs, batches of at most ``batch_size`` cut where
        that saves more padding than an extra forward pass costs (:func:`plan_batches`; a random batch of 32
        SMS padded to its longest text is ~3x its real tokens, cut by length ~1.15x).
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
            batch = self.tokenizer.pad(
                {"input_ids": [encoded[i] for i in rows]}, pad_to_multiple_of=PAD_TO_MULTIPLE_OF, return_tensors="pt"
            )
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out[rows] = self.model(**batch).logits.float().cpu().numpy()
        return out

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text before truncation (for callers that refuse over-long texts instead of truncating)."""
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        return torch.softmax(torch.from_numpy(self.logits(texts)), dim=-1)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Label ids: the saved decision threshold on the positive class, or argmax when there is none."""
        return apply_threshold(probabilities, self.threshold, self.positive)

    def predict(self, texts: list[str]) -> list[Prediction]:
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise SpamTuneError("predict got an empty or non-text input; pass non-empty strings")
        probs = self.probabilities(texts)
        decisions = self.decide(probs.numpy())
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
