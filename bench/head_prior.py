"""What an untrained classifier already knows: test ROC-AUC and accuracy of the head as it starts, random vs
label-word initialised (``model.head_init``), on a recipe's split, before any training step.

    python bench/head_prior.py --config configs/smollm2_lora.yaml --data SMSSpamCollection \\
        --set model.name_or_path=MODEL_DIR [--set model.input_template="...{text}..."]

With ``label_words`` the head's logits are the pretrained LM's next-token logits for the label words (" spam" vs
" ham"), so its ROC-AUC measures the prior that training starts from; a random head's is near 0.5. Prints one line
per head and writes nothing unless ``--out FILE.json`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True, help="the labelled data file (e.g. the UCI SMSSpamCollection)")
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", help="write the numbers as JSON here")
    return parser.parse_args(argv)


def spam_probabilities(model, tokenizer, texts: list[str], max_length: int, batch_size: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            out.append(model(**batch).logits.float().softmax(-1)[:, 1].numpy())
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from sklearn.metrics import roc_auc_score

    from pipeline.config import load_config
    from pipeline.data.split import load_splits
    from pipeline.data.tokenize import load_tokenizer
    from pipeline.model.head import head_label_token_ids
    from pipeline.model.load import load_model

    base = ["data.source=file", f"data.path={args.data}", *args.overrides, "model.mode=full"]
    # The split and the tokenizer are the same for both heads: read them once.
    first = load_config(args.config, base)
    rows = load_splits(first.data)[0][args.split]
    tokenizer = load_tokenizer(first.model)
    labels = np.asarray(rows["label"])
    results = {}
    for head in ("random", "label_words"):
        started = time.perf_counter()
        cfg = load_config(args.config, [*base, f"model.head_init={head}"])
        torch.manual_seed(cfg.training.seed)  # the random head as training would draw it
        ids = head_label_token_ids(cfg.model, cfg.data.id2label, tokenizer)
        model = load_model(
            cfg.model,
            cfg.data.id2label,
            tokenizer.pad_token_id,
            cache_dir=Path(cfg.data.cache_dir).expanduser(),
            label_token_ids=ids,
        ).eval()
        spam = spam_probabilities(model, tokenizer, list(rows["text"]), cfg.model.max_length, args.batch_size)
        results[head] = {
            "roc_auc": round(float(roc_auc_score(labels, spam)), 4),
            "accuracy_argmax": round(float(((spam > 0.5) == (labels == 1)).mean()), 4),
            "rows": len(labels),
            "label_token_ids": ids,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(
            f"{head:12s} {args.split} ROC-AUC {results[head]['roc_auc']:.4f}  accuracy (argmax) "
            f"{results[head]['accuracy_argmax']:.4f}  ({len(labels)} rows, {results[head]['seconds']} s)",
            flush=True,
        )
    if args.out:
        payload = {"config": args.config, "overrides": args.overrides, "split": args.split, "heads": results}
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
