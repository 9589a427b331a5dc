"""``spam-tune serve`` options: defaults that protect a server on a shared machine, checked once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline.errors import ServeError

BACKENDS = ("torch", "onnxruntime")
"""What computes the logits: torch (CPU or CUDA), or ONNX Runtime on CPU (the folder's model.onnx, written by
``spam-tune export --onnx``)."""

DTYPES = ("float32", "bfloat16", "float16")
"""Weights and activations the torch backend can be cast to (default: as saved); see
:func:`pipeline.serve.backends.resolve_dtype`."""


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    """The one refusal of a backend or dtype name outside its choices, for the settings and the Classifier alike."""
    if value not in choices:
        raise ServeError(f"unknown {kind} {value!r}; pass one of {', '.join(choices)}")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    """Loopback by default: exposing the model on a network is an explicit choice (--host 0.0.0.0)."""
    port: int = 8000
    """0 picks a free port (the address is printed when the server is up)."""
    max_batch_size: int = 32
    """Most texts in one forward pass; 1 turns dynamic batching off."""
    max_wait_ms: float = 5.0
    """How long the first queued text waits for others before its batch runs anyway (not after a batch of
    one: a lone client never waits)."""
    max_input_chars: int = 10_000
    """Longer texts are refused (413) before tokenization; tokens beyond the model's max length are truncated."""
    max_inputs_per_request: int = 128
    """Texts in one request (TEI's max_client_batch_size)."""
    max_body_bytes: int = 1_048_576
    """Request bodies over this are refused (413) from Content-Length, or while they stream in."""
    max_queue: int = 2048
    """Texts waiting for the model; beyond this requests get 429 so a burst cannot exhaust memory."""
    device: str | None = None
    """None/auto: CUDA when available, else CPU (always CPU with the onnxruntime backend)."""
    backend: str = "torch"
    """torch, or onnxruntime (CPU; measured faster than torch there, see the README's Serving section)."""
    dtype: str | None = None
    """None: as saved (float32 weights; a QLoRA base stays 4-bit), the probabilities training reported;
    bfloat16/float16 halve the weights' memory (measured no faster for GPT-2 small, see
    :func:`pipeline.serve.backends.resolve_dtype`)."""
    access_log: bool = False
    """Per-request log lines (off by default: /metrics counts requests and they cost time under load)."""
    graceful_timeout_s: int = 30
    """On SIGTERM/SIGINT, how long in-flight requests may take to finish before they are cut."""

    def __post_init__(self) -> None:
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_input_chars": self.max_input_chars,
            "max_inputs_per_request": self.max_inputs_per_request,
            "max_body_bytes": self.max_body_bytes,
            "max_queue": self.max_queue,
            "graceful_timeout_s": self.graceful_timeout_s,
        }
        for name, value in positive.items():
            if value < 1:
                raise ServeError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        check_choice("backend", self.backend, BACKENDS)
        if self.dtype is not None:
            check_choice("dtype", self.dtype, DTYPES)
        if self.max_wait_ms < 0:
            raise ServeError(f"--max-wait-ms must be 0 or more, got {self.max_wait_ms}")
        if not 0 <= self.port <= 65535:
            raise ServeError(f"--port must be between 0 and 65535, got {self.port}")
        if self.max_queue < self.max_inputs_per_request:
            raise ServeError(
                f"--max-queue ({self.max_queue}) is below --max-inputs-per-request ({self.max_inputs_per_request}); "
                "a full-size request could never be queued: raise --max-queue"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
