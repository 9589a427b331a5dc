"""Command-line options of ``spam-tune serve`` and ``spam-tune predict --file``, kept beside their defaults.

Light on purpose (no torch, pandas or FastAPI): ``pipeline.cli`` builds its parser from these on every call.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from pipeline.serve.settings import BACKENDS, DTYPES, ServeSettings

DEFAULT_CHUNK_SIZE = 1024
"""Rows that ``predict --file`` reads, sorts by length and classifies at a time."""


def add_serve_arguments(cmd: argparse.ArgumentParser) -> None:
    d = ServeSettings()
    cmd.add_argument("model_dir", help="a saved model dir: full, merged or LoRA adapter, e.g. runs/lora/model")
    cmd.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}: this machine only)")
    cmd.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0 = any free port)")
    cmd.add_argument(
        "--max-batch-size",
        type=int,
        default=d.max_batch_size,
        help=f"most texts in one forward pass (default {d.max_batch_size}; 1 turns dynamic batching off)",
    )
    cmd.add_argument(
        "--max-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help=f"how long a text waits for others to share its forward pass (default {d.max_wait_ms:g}; "
        "a lone client never waits)",
    )
    cmd.add_argument(
        "--max-input-chars",
        type=int,
        default=d.max_input_chars,
        help=f"longer texts are refused with 413 (default {d.max_input_chars})",
    )
    cmd.add_argument(
        "--max-inputs-per-request",
        type=int,
        default=d.max_inputs_per_request,
        help=f"texts in one request (default {d.max_inputs_per_request})",
    )
    cmd.add_argument(
        "--max-body-bytes",
        type=int,
        default=d.max_body_bytes,
        help=f"larger request bodies are refused with 413 (default {d.max_body_bytes})",
    )
    cmd.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help=f"texts waiting for the model before requests get 429 (default {d.max_queue})",
    )
    add_device_arguments(cmd)
    cmd.add_argument("--access-log", action="store_true", help="log every request (default: off; see /metrics)")


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    names = {f.name for f in fields(ServeSettings)}
    return ServeSettings(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def add_predict_file_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--file", help="texts to classify: CSV/TSV with a header, JSON lines, parquet, or plain text (one per line)"
    )
    cmd.add_argument("--out", help="write CSV, JSON lines or parquet (by extension); default: JSON lines on stdout")
    cmd.add_argument("--text-column", help="column of the texts in --file (default: text)")
    cmd.add_argument(
        "--format",
        dest="file_format",
        default="auto",
        choices=["auto", "csv", "tsv", "jsonl", "parquet", "text"],
        help="format of --file (default: by extension; .txt or none = plain text)",
    )
    cmd.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help=f"rows read, sorted by length and classified at a time (default {DEFAULT_CHUNK_SIZE})",
    )
    cmd.add_argument(
        "--allow-empty",
        action="store_true",
        help="keep empty/missing texts in the output with an empty label (default: refuse them, naming the rows)",
    )
    add_device_arguments(cmd)


def add_device_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda, cuda:N")
    cmd.add_argument(
        "--backend",
        choices=BACKENDS,
        default=BACKENDS[0],
        help="what computes the logits (default torch); onnxruntime runs the folder's model.onnx on CPU "
        "(write it with: spam-tune export MODEL_DIR --onnx)",
    )
    cmd.add_argument(
        "--dtype",
        choices=DTYPES,
        help="cast the torch weights and activations (default: as saved, float32, the probabilities training "
        "reported); bfloat16/float16 halve the weights' memory",
    )
