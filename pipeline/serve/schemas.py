"""Request and response shapes of ``POST /predict``: those of Hugging Face text-embeddings-inference (TEI).

TEI (``router/src/http/types.rs``) takes ``{"inputs": "text"}`` -> ``[{"label", "score"}, ...]`` and a batch
``{"inputs": [["t1"], ["t2"]]}`` -> one such list per text, plus ``truncate`` and ``raw_scores``. Two
differences, both documented on the OpenAPI page:

- TEI reads a flat list of two strings as a sentence pair; this model classifies single texts, so a flat
  list of strings (of any length) is a batch here, and ``[["a", "b"]]`` (a pair) is refused.
- A request with ``parameters`` is the Hugging Face Inference API form that ``InferenceClient`` posts
  (``{"inputs": "text", "parameters": {"top_k": 1}}``); it is answered in that API's shape, one list per
  input also for a single string, which is what the client parses.

Every field changes the answer, so unknown fields are refused instead of ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipeline.serve.scoring import Transform

INPUTS_HELP = (
    'send {"inputs": "one text"}, a batch {"inputs": ["text 1", "text 2"]} or TEI\'s batch form '
    '{"inputs": [["text 1"], ["text 2"]]}'
)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__
    )


def _bad(message: str) -> PydanticCustomError:
    return PydanticCustomError("inputs", message)


def _batch_item(item: Any, index: int) -> str:
    """One batch item: a string, or TEI's one-element list ``["text"]``."""
    if isinstance(item, list):
        if len(item) == 2 and all(isinstance(x, str) for x in item):
            raise _bad(f"inputs[{index}] is a sentence pair; this model classifies single texts: {INPUTS_HELP}")
        if len(item) != 1:
            raise _bad(f"inputs[{index}] is a list of {len(item)} items; a batch item is a text or [text]")
        item = item[0]
        index_text = f"inputs[{index}][0]"
    else:
        index_text = f"inputs[{index}]"
    if not isinstance(item, str):
        raise _bad(f"{index_text} is {_kind(item)}, not a string; {INPUTS_HELP}")
    return item


def normalize_inputs(value: Any) -> str | list[str]:
    """The text, or the batch as a flat list of texts; a clear error for anything else."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _bad(f"inputs is {_kind(value)}; {INPUTS_HELP}")
    if not value:
        raise _bad(f"inputs is an empty list; {INPUTS_HELP}")
    return [_batch_item(item, i) for i, item in enumerate(value)]


class Parameters(BaseModel):
    """The Hugging Face Inference API's text-classification parameters (what ``InferenceClient`` sends)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(None, ge=1, description="Return only the first K labels (the decided one first).")
    function_to_apply: Transform | None = Field(
        None, description="softmax (default): probabilities; sigmoid: per-label sigmoid; none: raw logits."
    )


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": "WINNER!! Claim your free prize now"},
                {"inputs": ["see you at 6?", "URGENT! You have won a 1 week FREE membership"]},
                {"inputs": [["see you at 6?"], ["URGENT! You have won a 1 week FREE membership"]]},
                {"inputs": "WINNER!! Claim your free prize now", "parameters": {"top_k": 1}},
            ]
        },
    )

    inputs: str | list[str] | list[list[str]] = Field(
        description=(
            "A text; or a batch: a flat list of texts, or TEI's list of one-element lists. "
            "A flat list is always a batch here (TEI reads two strings as a sentence pair, "
            "which this model does not take)."
        )
    )
    truncate: bool | None = Field(
        None,
        description=(
            "Texts longer than the model's max length (see /info) are truncated, as in training, unless "
            "this is false: then they are refused with 413 (TEI's rule)."
        ),
    )
    truncation_direction: Literal["right", "Right", "left", "Left"] = Field(
        "right", description="Only right truncation (keep the start, as in training) is supported."
    )
    raw_scores: bool = Field(False, description="Raw logits instead of probabilities (TEI).")
    parameters: Parameters | None = Field(
        None,
        description=(
            "Hugging Face Inference API form (InferenceClient.text_classification); when present, the "
            "answer is one list per input, also for a single string."
        ),
    )

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> str | list[str]:
        return normalize_inputs(value)

    @field_validator("truncation_direction")
    @classmethod
    def _right_only(cls, value: str) -> str:
        if value.lower() != "right":
            raise PydanticCustomError(
                "truncation_direction", "truncation_direction=left is not supported; omit it or send right"
            )
        return value

    @model_validator(mode="after")
    def _one_score_transform(self) -> PredictRequest:
        asked = self.parameters.function_to_apply if self.parameters else None
        if self.raw_scores and asked not in (None, "none"):
            raise PydanticCustomError(
                "raw_scores", f"raw_scores=true contradicts parameters.function_to_apply={asked}; send one of them"
            )
        return self

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)  # type: ignore[arg-type]

    def nested_answer(self) -> bool:
        """One list per input (batch, or the Inference API form) rather than TEI's single list."""
        return not isinstance(self.inputs, str) or self.parameters is not None

    def transform(self, default: Transform = "softmax") -> Transform:
        """``default``: the model's own (softmax; a multi-label model's is sigmoid, as transformers' pipeline)."""
        asked = self.parameters.function_to_apply if self.parameters else None
        return "none" if self.raw_scores else asked or default

    def top_k(self) -> int | None:
        return self.parameters.top_k if self.parameters else None


class Prediction(BaseModel):
    label: str = Field(examples=["spam"])
    score: float = Field(examples=[0.97])


class ErrorResponse(BaseModel):
    """Every error has this shape (TEI's): a one-line message and a type."""

    error: str = Field(examples=["inputs is an empty list; send {...}"])
    error_type: str = Field(
        examples=["validation"],
        description="validation (4xx: fix the request), overloaded (429), backend (503: the model failed), "
        "unhealthy (503).",
    )
