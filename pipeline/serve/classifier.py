"""Classify new texts with a saved model folder (``<run>/model``, a merged export, or its run dir)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.tokenize import make_collator
from pipeline.errors import ServeError
from pipeline.evaluation.thresholds import apply_threshold
from pipeline.export.folder import load_model_folder, resolve_model_dir


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


class Classifier:
    """Loads once, then classifies batches of texts; thread-unsafe like any torch module."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 32, device: str | None = None) -> None:
        self.model_dir = resolve_model_dir(model_dir)
        loaded = load_model_folder(self.model_dir)
        self.metadata = loaded.metadata
        self.tokenizer = loaded.tokenizer
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = loaded.model.to(self.device)
        self.batch_size = batch_size
        self.max_length = self.metadata.max_length
        self.id2label = dict(self.metadata.id2label)
        self.threshold: float | None = self.metadata.threshold
        self.positive = self.metadata.positive_label
        self._collate = make_collator(self.tokenizer)

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """Class probabilities, one row per text (float32 on CPU), computed ``batch_size`` texts at a time."""
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            features = [self.tokenizer(t, truncation=True, max_length=self.max_length) for t in chunk]
            batch = {k: v.to(self.device) for k, v in self._collate(features).items()}
            rows.append(torch.softmax(self.model(**batch).logits.float(), dim=-1).cpu())
        return torch.cat(rows) if rows else torch.empty(0, len(self.id2label))

    def decide(self, probabilities: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class ids as the saved model decides: the threshold chosen on validation, else argmax."""
        return apply_threshold(np.asarray(probabilities), self.threshold, self.positive)

    def predict(self, texts: list[str]) -> list[Prediction]:
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ServeError(
                f"input(s) {', '.join(map(str, bad[:10]))} (0-based) are empty or not text; pass non-empty strings"
            )
        # Lone surrogates (from undecodable command-line bytes or "\ud800" JSON escapes) cannot reach the tokenizer.
        broken = [i for i, t in enumerate(texts) if not _is_unicode_text(t)]
        if broken:
            raise ServeError(
                f"input(s) {', '.join(map(str, broken[:10]))} (0-based) are not valid Unicode text (lone surrogate "
                "characters); pass UTF-8 text"
            )
        probs = self.probabilities(texts)
        decisions = self.decide(probs)
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


def _is_unicode_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
