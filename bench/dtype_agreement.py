"""How far a lower-precision dtype moves a trained classifier's answers: every message of a file scored by the
Python API in float32 and in another dtype, then the decisions that differ and the probability gaps.

    python bench/dtype_agreement.py MODEL_DIR --data SMSSpamCollection --dtype bfloat16 \
        --out bench/results/dtype-agreement-smollm2-cpu.json

Speed says little about whether a dtype can serve a model: this does. Decisions use the model's saved threshold
(argmax when it has none), as ``spam-tune serve`` decides.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/dtype_agreement.py` from anywhere
from serve_speed import read_messages  # bench/ is not a package: python puts this file's folder on the path


def scored(
    model_dir: str, texts: list[str], dtype: str, device: str | None, batch_size: int
) -> tuple[Any, np.ndarray, float]:
    from pipeline.serve.classifier import Classifier

    classifier = Classifier(model_dir, dtype=dtype, device=device, batch_size=batch_size)
    started = time.perf_counter()
    probabilities = classifier.probabilities(texts).numpy()
    return classifier, probabilities, len(texts) / (time.perf_counter() - started)


def main() -> int:
    from pipeline.serve.settings import DTYPES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a model folder (or a Trainer checkpoint) that `spam-tune serve` takes")
    parser.add_argument("--data", required=True, help="the UCI SMSSpamCollection file (label<TAB>text)")
    parser.add_argument("--dtype", default="bfloat16", choices=[d for d in DTYPES if d != "float32"])
    parser.add_argument("--device", help="auto (default), cpu, cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", help="write the record as JSON here")
    args = parser.parse_args()

    texts = read_messages(Path(args.data))
    reference, p32, rate32 = scored(args.model_dir, texts, "float32", args.device, args.batch_size)
    _, plow, rate_low = scored(args.model_dir, texts, args.dtype, args.device, args.batch_size)
    decided32, decided_low = reference.decide(p32), reference.decide(plow)
    gap = np.abs(p32 - plow).max(axis=1)
    positive = p32[:, -1]
    record = {
        "model_dir": str(args.model_dir),
        "device": str(reference.device),
        "dtype": args.dtype,
        "messages": len(texts),
        "threshold": reference.threshold,
        "decisions_that_differ": int((decided32 != decided_low).sum()),
        "probability_gap": {
            "median": round(float(np.median(gap)), 5),
            "p99": round(float(np.quantile(gap, 0.99)), 5),
            "max": round(float(gap.max()), 5),
        },
        # How confident the model is decides how many answers a small gap can flip.
        "float32_p_between_0.1_and_0.9": int(((positive > 0.1) & (positive < 0.9)).sum()),
        "messages_per_s": {"float32": round(rate32, 1), args.dtype: round(rate_low, 1)},
        "command": " ".join(["bench/dtype_agreement.py", *sys.argv[1:]]),
    }
    print(json.dumps(record))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
