"""Classify new texts with a saved model directory (``<run>/model`` or a merged export)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from pipeline.errors import SpamTuneError
from pipeline.metrics import softmax
from pipeline.rundir import read_model_metadata
from pipeline.thresholds import apply_threshold
from pipeline.tokenize import make_collator, with_pad_token


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
        self.tokenizer = with_pad_token(AutoTokenizer.from_pretrained(str(self.model_dir)))
        self.model = load_model_dir(self.model_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.batch_size = batch_size
        self.max_length = int(self.metadata.get("max_length", 256))
        config = self.model.config
        self.id2label = {int(k): v for k, v in config.id2label.items()}
        self.threshold: float | None = self.metadata.get("threshold")
        self.positive = int(self.metadata.get("positive_label", 1))
        self._collate = make_collator(self.tokenizer)

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            features = [self.tokenizer(t, truncation=True, max_length=self.max_length) for t in chunk]
            batch = {k: v.to(self.device) for k, v in self._collate(features).items()}
            logits = self.model(**batch).logits.float().cpu().numpy()
            rows.append(torch.from_numpy(softmax(logits)))
        return torch.cat(rows) if rows else torch.empty(0, len(self.id2label))

    def predict(self, texts: list[str]) -> list[Prediction]:
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise SpamTuneError("predict got an empty or non-text input; pass non-empty strings")
        probs = self.probabilities(texts)
        decisions = apply_threshold(probs.numpy(), self.threshold, self.positive)  # argmax when no threshold
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
