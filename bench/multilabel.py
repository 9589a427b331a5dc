"""Multi-label quality on real data: Debian package descriptions -> their debtags, model beside TF-IDF one-vs-rest.

    python bench/multilabel.py                      # seeds 0 1 2, configs/multilabel_lora.yaml, SmolLM2 LoRA
    python bench/multilabel.py --seeds 0 --data-only --out-dir DIR    # only write DIR/debtags.jsonl
    python bench/multilabel.py --packages FILE ...   # another Debian/Ubuntu `Packages` index (plain, .gz, .xz, .lz4)

No multi-label text dataset ships in a package on the registries this project can reach, so this benchmark builds
one from a real, human-curated source every Debian system already holds: its package index
(``/var/lib/apt/lists/*_Packages*``, read by default). Each binary package has a one-line description and, for
about half of them, debtags, curated tags in facets. The text is the description; the labels are the ``--labels``
(10) most frequent tags of the facets ``use`` (what it is for), ``works-with`` (what it handles) and ``network``
(client / server); a package carrying none of them is left out; a description shared by several packages (a
library and its -dev package) is one row carrying the union of their tags. On Debian 12 (bookworm) that is
4,255 texts, 28 % of them with two labels or more.

Per seed (``data.seed`` and ``training.seed``) it runs the real entry point (``accelerate launch train.py``) on
that file and prints micro / macro / samples F1, subset accuracy and Hamming loss on the test split, and per
label F1, beside the TF-IDF + LinearSVC one-vs-rest row fitted on the same split; then the mean ± std over seeds.
It writes ``<out-dir>/multilabel-debtags-<mode>.json`` (and the data file it trained on, ``debtags.jsonl``).
"""

from __future__ import annotations

import argparse
import bz2
import collections
import gzip
import json
import lzma
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/quality.py: the model lookup and the run loop

from quality import (
    BenchError,
    SeedOutcome,
    bench_settings,
    config_record,
    drop_scratch,
    gguf_cache_dir,
    launch_command,
    log_tail,
    mean_std,
    read_recipe,
    resolve_device,
    resolve_model,
    run_env,
    run_main,
    run_seed,
    versions_and_device,
)

ROOT = Path(__file__).resolve().parents[1]
APT_LISTS = Path("/var/lib/apt/lists")
FACETS = ("use", "works-with", "network")
SUMMARY_KEYS = ("f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
BASELINE = "TF-IDF (char_wb 1-5-grams, sublinear tf) + LinearSVC (C=1), one per label (one-vs-rest), same split"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", help="a Debian `Packages` index (default: the largest under /var/lib/apt/lists)")
    parser.add_argument("--labels", type=int, default=10, help="how many of the most frequent tags to classify")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default=str(ROOT / "configs" / "multilabel_lora.yaml"))
    parser.add_argument("--model", choices=["smollm2", "gemma3"], default="smollm2", help="offline weights to train")
    parser.add_argument("--model-dir", help="local model dir (a checkpoint, or the dir holding --gguf-file)")
    parser.add_argument("--gguf-file", help="GGUF file name inside --model-dir")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--launcher", choices=["accelerate", "python"], default="accelerate")
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "multilabel"), help="run dirs and logs")
    parser.add_argument("--cache-dir", help="where a GGUF is de-quantized (default: the config's data.cache_dir)")
    parser.add_argument("--data-only", action="store_true", help="write the data file and its label counts, no run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.labels < 2:
        parser.error("--labels must be >= 2")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    return args


# ---------------------------------------------------------------------------------------------
# The data: a Packages index -> {"text": description, "labels": [tags]} rows


def default_packages_file() -> Path:
    """The largest package index apt keeps (the main archive's), as apt wrote it (often lz4-compressed)."""
    found = [p for p in APT_LISTS.glob("*_Packages*") if p.is_file()] if APT_LISTS.is_dir() else []
    if not found:
        raise BenchError(f"no *_Packages* index under {APT_LISTS}; run `apt-get update` or pass --packages FILE")
    return max(found, key=lambda p: p.stat().st_size)


def read_index(path: Path) -> str:
    """The index's text, decompressed by its suffix (lz4 through apt's own helper, which reads what apt writes)."""
    if not path.is_file():
        raise BenchError(f"--packages {path} not found; pass a Debian `Packages` file")
    openers = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
    if path.suffix in openers:
        with openers[path.suffix](path, "rt", encoding="utf-8") as handle:
            return handle.read()
    if path.suffix == ".lz4":
        helper = shutil.which("apt-helper") or "/usr/lib/apt/apt-helper"
        try:
            out = subprocess.run([helper, "cat-file", str(path)], check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.CalledProcessError) as err:
            raise BenchError(f"cannot decompress {path} ({err}); pass a plain or .gz/.xz `Packages` file") from None
        return out.stdout.decode("utf-8")
    return path.read_text(encoding="utf-8")


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """RFC 822-style stanzas (blank-line separated); a continuation line (leading space) extends the field."""
    stanzas = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def tagged_descriptions(stanzas: list[dict[str, str]]) -> list[tuple[str, set[str]]]:
    """(one-line description, its tags) of every package that has both."""
    rows = []
    for fields in stanzas:
        description, tags = fields.get("Description", "").strip(), fields.get("Tag", "")
        names = {t.strip() for t in tags.split(",") if t.strip()}
        if description and names:
            rows.append((description, names))
    return rows


def most_frequent_tags(rows: list[tuple[str, set[str]]], count: int, facets: tuple[str, ...] = FACETS) -> list[str]:
    """The ``count`` most frequent tags of ``facets`` (ties by name, so the choice is deterministic)."""
    counts = collections.Counter(t for _, tags in rows for t in tags if t.split("::", 1)[0] in facets)
    if len(counts) < count:
        raise BenchError(f"the index has {len(counts)} tags in the facets {', '.join(facets)}; pass --labels <= that")
    return [tag for tag, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]


def debtags_rows(rows: list[tuple[str, set[str]]], labels: list[str]) -> list[dict[str, Any]]:
    """One row per description carrying at least one label; a shared description carries the union of tags."""
    chosen = set(labels)
    merged: dict[str, set[str]] = {}
    for description, tags in rows:
        kept = tags & chosen
        if kept:
            merged.setdefault(description, set()).update(kept)
    order = {label: i for i, label in enumerate(labels)}
    return [{"text": text, "labels": sorted(tags, key=order.__getitem__)} for text, tags in merged.items()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from pipeline.fileio import write_atomic  # a reader never sees half a file

    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def build_data(args: argparse.Namespace, out: Path) -> tuple[Path, list[str], dict[str, Any]]:
    source = Path(args.packages).expanduser() if args.packages else default_packages_file()
    tagged = tagged_descriptions(parse_stanzas(read_index(source)))
    labels = most_frequent_tags(tagged, args.labels)
    rows = debtags_rows(tagged, labels)
    write_jsonl(out, rows)
    counts = collections.Counter(label for row in rows for label in row["labels"])
    sizes = collections.Counter(len(row["labels"]) for row in rows)
    facts = {
        "index": str(source),
        "tagged_packages": len(tagged),
        "rows": len(rows),
        "label_counts": {label: counts[label] for label in labels},
        "labels_per_row": {str(k): sizes[k] for k in sorted(sizes)},
    }
    return out, labels, facts


# ---------------------------------------------------------------------------------------------
# Runs and numbers


def run_overrides(data: Path, labels: list[str], device: str) -> list[str]:
    """The data file and its labels, plus benchmark settings that leave the learning unchanged."""
    mapping = "{" + ", ".join(f"{json.dumps(label)}: {i}" for i, label in enumerate(labels)) + "}"
    return [
        "data.source=file",
        f"data.path={data}",
        "data.format=jsonl",
        f"data.labels={mapping}",
        *bench_settings(device),
    ]


def split_numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary keys and per-label F1 / support of one split's multi-label metrics."""
    out = {key: metrics[key] for key in SUMMARY_KEYS}
    out["per_label_f1"] = {name: v["f1"] for name, v in metrics["per_label"].items()}
    out["per_label_support"] = {name: v["support"] for name, v in metrics["per_label"].items()}
    return out


def seed_record(outcome: SeedOutcome) -> dict[str, Any]:
    metrics = outcome.metrics or {}
    training = metrics.get("training") or {}
    return {
        "seed": outcome.seed,
        "test": split_numbers(metrics["test"]),
        "baseline_test": split_numbers(metrics["baseline"]["test"]),
        "validation": {key: metrics["validation"][key] for key in SUMMARY_KEYS},
        "thresholds": (metrics.get("threshold") or {}).get("values"),
        "epochs_run": training.get("epoch"),
        "best_checkpoint": training.get("best_checkpoint"),
        "train_seconds": training.get("train_runtime"),
        "wall_seconds": round(outcome.wall_seconds, 1),
        "split_sizes": (metrics.get("data") or {}).get("split_sizes"),
        "history": metrics.get("history"),
        "run_dir": str(outcome.run_dir),
    }


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {
        key: dict(zip(("mean", "std"), mean_std([float(r[key]) for r in rows]), strict=True)) for key in SUMMARY_KEYS
    }


def print_row(name: str, numbers: dict[str, Any]) -> None:
    cells = " ".join(f"{numbers[key]:9.4f}" for key in SUMMARY_KEYS)
    print(f"{name:24s} {cells}", flush=True)


def print_header() -> None:
    print(f"{'':24s} " + " ".join(f"{k:>9s}" for k in ("micro F1", "macro F1", "samples", "subset", "Hamming")))


def print_result(result: dict[str, Any]) -> None:
    print(f"\n{len(result['per_seed'])} seed(s), {result['mode']}, on {result['device']}")
    print_header()
    for record in result["per_seed"]:
        print_row(f"seed {record['seed']}", record["test"])
        print_row("  TF-IDF one-vs-rest", record["baseline_test"])
    for name, agg in (("mean", result["mean"]), ("TF-IDF mean", result["baseline_mean"])):
        cells = " ".join(f"{agg[k]['mean']:.4f}±{agg[k]['std']:.4f}" for k in SUMMARY_KEYS)
        print(f"{name:24s} {cells}")
    print(f"above the TF-IDF row on every seed (micro F1): {all(result['above_baseline_micro_f1'])}")
    labels = list(result["per_seed"][0]["test"]["per_label_f1"])
    print(f"\n{'per-label test F1 (mean)':28s} {'model':>7s} {'TF-IDF':>7s} {'support':>8s}")
    for label in labels:
        model = sum(r["test"]["per_label_f1"][label] for r in result["per_seed"]) / len(result["per_seed"])
        base = sum(r["baseline_test"]["per_label_f1"][label] for r in result["per_seed"]) / len(result["per_seed"])
        support = result["per_seed"][0]["test"]["per_label_support"][label]
        print(f"{label:28s} {model:7.4f} {base:7.4f} {support:8d}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from pipeline.fileio import write_json

    out_dir = Path(args.out_dir).expanduser().resolve()
    data, labels, facts = build_data(args, out_dir / "debtags.jsonl")
    print(
        f"data: {facts['rows']} texts from {facts['tagged_packages']} tagged packages of {facts['index']} -> {data}\n"
        f"labels ({len(labels)}): " + ", ".join(f"{k} {v}" for k, v in facts["label_counts"].items()) + "\n"
        "labels per text: " + ", ".join(f"{k}: {v}" for k, v in facts["labels_per_row"].items()),
        flush=True,
    )
    if args.data_only:
        return 0
    config = Path(args.config).expanduser().resolve()
    recipe = read_recipe(config)
    device = resolve_device(args.device)
    source = resolve_model(args, recipe, gguf_cache_dir(args, recipe))
    common = run_overrides(data, labels, device)
    runs = Path(args.runs_dir).expanduser().resolve()
    env = run_env(device, 1)
    mode = (recipe.get("model") or {}).get("mode", "full")
    records, failed = [], []
    for seed in args.seeds:
        run_dir = runs / f"debtags-{mode}-seed{seed}"
        overrides = [
            *common,
            *source.overrides,
            f"output.dir={run_dir}",
            f"data.cache_dir={run_dir}-cache",
            f"data.seed={seed}",
            f"training.seed={seed}",
            *args.overrides,
        ]
        outcome = run_seed(launch_command(args, config, overrides), run_dir, seed, env, None)
        drop_scratch(run_dir)
        if outcome.metrics is None:
            failed.append({"seed": seed, "reason": f"exit {outcome.returncode}", "log": str(outcome.log)})
            print(
                f"seed {seed} FAILED (exit {outcome.returncode}); last lines of {outcome.log}:\n{log_tail(outcome.log)}"
            )
            continue
        records.append(seed_record(outcome))
        print_header()
        print_row(f"seed {seed} ({records[-1]['wall_seconds']:.0f} s)", records[-1]["test"])
        print_row("  TF-IDF one-vs-rest", records[-1]["baseline_test"])
    if not records:
        print("error: no seed finished; see the logs above", file=sys.stderr)
        return 1
    versions, device_name = versions_and_device(records, device)
    result = {
        "task": "Debian package description -> debtags (multi-label)",
        "mode": mode,
        "data": facts,
        "labels": labels,
        "seeds": [r["seed"] for r in records],
        "per_seed": records,
        "mean": aggregate([r["test"] for r in records]),
        "baseline_mean": aggregate([r["baseline_test"] for r in records]),
        "above_baseline_micro_f1": [r["test"]["f1"] > r["baseline_test"]["f1"] for r in records],
        "baseline": BASELINE,
        "failed": failed,
        "config": config_record(config, common, args.overrides),
        "model": {"source": source.description, "gguf_sha256": source.gguf_sha256},
        "command": "python " + shlex.join(["bench/multilabel.py", *sys.argv[1:]]),
        "device": device_name,
        "versions": versions,
    }
    out = out_dir / f"multilabel-debtags-{mode}.json"
    write_json(out, result)
    print_result(result)
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
