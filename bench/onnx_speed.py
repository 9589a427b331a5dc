"""ONNX Runtime vs torch on CPU for the GPT-2 small architecture (random weights), on SMS messages.

    pip install onnxruntime onnx
    OMP_WAIT_POLICY=PASSIVE python bench/onnx_speed.py --data SMSSpamCollection \
        --out bench/results/onnx-speed-cpu.json

The classifier (``GPT2ForSequenceClassification``, saved as a model folder by ``serve_speed.build_model_dir``) is
exported with ``torch.onnx.export`` (TorchScript exporter, dynamic batch and sequence axes) and run by an
``onnxruntime`` CPU session with as many threads as torch uses. Both see the same inputs: one message at a time,
and length-sorted batches of ``--batch-size`` padded to a multiple of 8 (as ``Classifier.logits`` pads). The two
are timed in interleaved rounds, so a change in the machine's load hits both alike, and the logits are compared.
This measurement (raw sessions, no Classifier) came before the backend was built; the backend
itself (``spam-tune export --onnx``, ``--backend onnxruntime``) is measured by ``serve_speed.py --backends torch
onnxruntime``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_speed import build_model_dir, read_messages  # bench/ is not a package: the path line above finds it

Batch = tuple[list[int], np.ndarray, np.ndarray]


def export(model: Any, path: Path) -> None:
    import torch

    class Logits(torch.nn.Module):  # keyword arguments: positional ones would land in past_key_values
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    ids = torch.tensor([[100, 200, 300, 400]])
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}}
    torch.onnx.export(
        Logits(model), (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
        output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False,
    )  # fmt: skip


def batches(encoded: list[list[int]], rows: list[int], size: int, pad_id: int) -> list[Batch]:
    out = []
    for start in range(0, len(rows), size):
        part = rows[start : start + size]
        width = -(-max(len(encoded[i]) for i in part) // 8) * 8
        ids = np.full((len(part), width), pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for k, i in enumerate(part):
            ids[k, : len(encoded[i])] = encoded[i]
            mask[k, : len(encoded[i])] = 1
        out.append((part, ids, mask))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the UCI SMSSpamCollection file")
    parser.add_argument("--messages", type=int, default=256, help="a fixed random sample of this many messages")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="onnx-speed-") as tmp:
        folder = build_model_dir("gpt2", Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        export(AutoModelForSequenceClassification.from_pretrained(folder).eval(), Path(tmp) / "model.onnx")
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()  # a fresh copy: export traced one
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(Path(tmp) / "model.onnx"), options, providers=["CPUExecutionProvider"])

        texts = random.Random(0).sample(read_messages(Path(args.data)), args.messages)
        encoded = tokenizer(texts, truncation=True, max_length=256)["input_ids"]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        single = batches(encoded, list(range(len(encoded))), 1, tokenizer.pad_token_id)
        batched = batches(encoded, order, args.batch_size, tokenizer.pad_token_id)

        def run_torch(work: list[Batch]) -> dict[int, np.ndarray]:
            out = {}
            with torch.inference_mode():
                for rows, ids, mask in work:
                    logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
                    out.update(zip(rows, logits.numpy(), strict=True))
            return out

        def run_ort(work: list[Batch]) -> dict[int, np.ndarray]:
            out = {}
            for rows, ids, mask in work:
                logits = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
                out.update(zip(rows, logits, strict=True))
            return out

        reference, onnx = run_torch(batched), run_ort(batched)
        diff = max(float(np.abs(reference[i] - onnx[i]).max()) for i in reference)
        seconds = dict.fromkeys(("torch_one_at_a_time", "onnx_one_at_a_time", "torch_batched", "onnx_batched"), 0.0)
        for r in range(args.rounds):
            for name, run, work in (
                ("torch_one_at_a_time", run_torch, single[r :: args.rounds]),
                ("onnx_one_at_a_time", run_ort, single[r :: args.rounds]),
                ("torch_batched", run_torch, batched[r :: args.rounds]),
                ("onnx_batched", run_ort, batched[r :: args.rounds]),
            ):
                started = time.perf_counter()
                run(work)
                seconds[name] += time.perf_counter() - started
    result = {
        "bench": "onnx_vs_torch",
        "model": "gpt2 (GPT2Config() defaults, random weights)",
        "messages": len(texts),
        "max_abs_logit_diff": diff,
        "messages_per_s": {name: round(len(texts) / s, 2) for name, s in seconds.items()},
        "onnx_speedup_batched": round(seconds["torch_batched"] / seconds["onnx_batched"], 2),
        "onnx_speedup_one_at_a_time": round(seconds["torch_one_at_a_time"] / seconds["onnx_one_at_a_time"], 2),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
