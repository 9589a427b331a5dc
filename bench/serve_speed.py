"""Serving speed: the Python API one message at a time vs batched, and the HTTP server with dynamic batching
on vs off under concurrent clients, measured side by side in one run.

    python bench/serve_speed.py --data SMSSpamCollection --out bench/results/serve-speed-cpu.json
    OMP_WAIT_POLICY=PASSIVE python bench/serve_speed.py --data SMSSpamCollection --skip http \
        --backends torch onnxruntime --gpt2-api-messages 200 --out bench/results/serve-speed-onnx-cpu.json

Models (random weights: speed does not depend on weight values), each saved as a model folder with the
bundled GPT-2 tokenizer and served by ``spam-tune serve`` exactly as a trained one would be:

- ``gpt2``: the GPT-2 small architecture (``GPT2Config()`` defaults, 124M parameters), max length 256
  (the config default);
- ``smoke``: the architecture of ``configs/smoke.yaml`` (2 blocks, 64 wide), max length 64.

1. Python API on the messages of ``--data`` (the UCI SMS file, 5,574 messages): ``Classifier.logits([text])``
   per message, vs ``Classifier.logits(all texts)`` (sorted by length, batches of at most ``--batch-size``),
   plus batches of ``--batch-size`` in file order (sorted only within each batch) to show what the global sort
   buys. ``smoke`` uses every message; ``gpt2`` a fixed random sample of ``--gpt2-api-messages`` (one message
   at a time on all 5,574 would take ~20 minutes on 2 CPU cores).
   With ``--backends torch onnxruntime`` each way runs on both backends (the folder is exported with
   ``spam-tune export --onnx``'s code first), interleaved round by round, and the records say how much faster
   ONNX Runtime was than torch and how far its probabilities were from torch's. ``--dtypes float32 bfloat16`` does
   the same for torch in float32 (the serving default) and in bfloat16.
2. HTTP: ``spam-tune serve`` in a subprocess on 127.0.0.1, and this process as the client (aiohttp): for each
   concurrency in ``--clients``, ``--requests`` (``gpt2``: ``--gpt2-requests``) single-message requests after
   a warm-up, with dynamic batching on (``--max-batch-size`` = ``--batch-size``) and off
   (``--max-batch-size 1``): requests/s, p50 and p99 latency, and the mean batch size the server's /metrics
   reports for the measured requests. ``--http-backend onnxruntime`` serves with ONNX Runtime instead of torch.

On a machine shared with other busy processes, run it with ``OMP_WAIT_POLICY=PASSIVE``: OpenMP's default
spin-waiting makes torch's small forward passes wait for descheduled threads (measured here: one message
through the smoke model took ~100 ms instead of ~1.5 ms). The environment block records the setting.

Prints one JSON line per measurement and writes them all, with the machine and library versions, to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/serve_speed.py` from anywhere
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the Hub

ARCHS: dict[str, dict[str, int]] = {
    "gpt2": {},  # GPT2Config() defaults: 12 blocks, 768 wide, 12 heads
    "smoke": {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128},
}
MAX_LENGTH = {"gpt2": 256, "smoke": 64}


def read_messages(path: Path) -> list[str]:
    """The texts of the UCI ``label<TAB>text`` file, every line (5,574 in the real file)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.partition("\t")[2] for line in lines if line.strip()]


def build_model_dir(arch: str, root: Path, seed: int = 0) -> Path:
    """A random-weight GPT-2 classifier saved as a model folder, with the bundled GPT-2 tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from pipeline.data.tokenize import bundled_gpt2_tokenizer, with_pad_token
    from pipeline.export.metadata import ModelMetadata

    folder = root / arch
    tokenizer = with_pad_token(bundled_gpt2_tokenizer())
    torch.manual_seed(seed)
    config = GPT2Config(
        **ARCHS[arch],
        num_labels=2,
        id2label={0: "ham", 1: "spam"},
        label2id={"ham": 0, "spam": 1},
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2ForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ModelMetadata(id2label={0: "ham", 1: "spam"}, max_length=MAX_LENGTH[arch]).write(folder)
    return folder


def emit(results: list[dict[str, Any]], record: dict[str, Any]) -> None:
    results.append(record)
    print(json.dumps(record), flush=True)


# ---------------------------------------------------------------------------------------------
# 1. Python API


def bench_api(
    model_dir: Path,
    model: str,
    texts: list[str],
    args: argparse.Namespace,
) -> list[dict]:
    """The three ways for each variant (a backend, and for torch each of ``--dtypes``), interleaved over
    ``args.rounds`` slices of ``texts`` (round by round, every variant and way in turn), so that a change in the
    machine's load during the run hits all of them alike. A variant is named by its backend, plus its dtype when
    that is not float32 (``torch``, ``torch-bfloat16``, ``onnxruntime``); ``torch`` is the reference of
    ``speedup_vs_torch`` and of the probability differences."""
    from pipeline.serve.classifier import Classifier

    classifiers = {}
    for backend in args.backends:
        for dtype in args.dtypes if backend == "torch" else [None]:
            c = Classifier(model_dir, batch_size=args.batch_size, device=args.device, backend=backend, dtype=dtype)
            name = backend if c.backend.dtype == "float32" else f"{backend}-{c.backend.dtype}"
            classifiers.setdefault(name, c)
    for classifier in classifiers.values():
        classifier.logits(texts[:64])  # warm-up: first-call allocations, lazy inits, the measured pass cost
    ways = {
        (backend, how): run for backend, c in classifiers.items() for how, run in api_ways(c, args.batch_size).items()
    }
    seconds = dict.fromkeys(ways, 0.0)
    for i in range(args.rounds):
        part = texts[i * len(texts) // args.rounds : (i + 1) * len(texts) // args.rounds]
        for key, run in ways.items():
            started = time.perf_counter()
            run(part)
            seconds[key] += time.perf_counter() - started
    diffs = probability_diffs(classifiers, texts)
    return [
        {
            "bench": "api",
            "model": model,
            "variant": backend,
            "backend": classifiers[backend].backend.name,
            "dtype": classifiers[backend].backend.dtype,
            "device": str(classifiers[backend].device),
            "how": how,
            "messages": len(texts),
            "rounds": args.rounds,
            "batch_size": 1 if how == "one_at_a_time" else args.batch_size,
            "seconds": round(took, 3),
            "messages_per_s": round(len(texts) / took, 1),
            "speedup_vs_one_at_a_time": round(seconds[backend, "one_at_a_time"] / took, 2),
            **({"speedup_vs_torch": round(seconds["torch", how] / took, 2)} if ("torch", how) in seconds else {}),
            **({"max_abs_probability_diff_vs_torch": diffs[backend]} if backend in diffs else {}),
        }
        for (backend, how), took in seconds.items()
    ]


def api_ways(classifier: Any, batch_size: int) -> dict[str, Any]:
    def one_at_a_time(part: list[str]) -> None:
        for text in part:
            classifier.logits([text])

    def batched_file_order(part: list[str]) -> None:
        for start in range(0, len(part), batch_size):
            classifier.logits(part[start : start + batch_size])

    return {
        "one_at_a_time": one_at_a_time,
        "batched_file_order": batched_file_order,
        "batched_length_sorted": classifier.logits,  # sorts the whole slice, then plans the batches
    }


def probability_diffs(classifiers: dict[str, Any], texts: list[str]) -> dict[str, float]:
    """Largest |p(backend) - p(torch)| over ``texts``, per backend other than torch: the speed is for the same
    answers."""
    if "torch" not in classifiers:
        return {}
    expected = classifiers["torch"].probabilities(texts).numpy()
    return {
        backend: float(np.abs(c.probabilities(texts).numpy() - expected).max())
        for backend, c in classifiers.items()
        if backend != "torch"
    }


# ---------------------------------------------------------------------------------------------
# 2. HTTP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, port: int, max_batch_size: int, args: argparse.Namespace):
    command = [
        sys.executable, "-m", "pipeline.cli", "serve", str(model_dir), "--port", str(port),
        "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(args.max_wait_ms),
        "--max-queue", "4096", "--backend", args.http_backend,
    ]  # fmt: skip
    if args.http_dtype:
        command += ["--dtype", args.http_dtype]
    if args.device:
        command += ["--device", args.device]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stderr.read()[-2000:]}")
            try:
                async with session.get(url + "/health") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError("server did not start")


async def load(url: str, texts: list[str], requests: int, clients: int) -> tuple[float, list[float], int]:
    """``requests`` single-message POSTs from ``clients`` concurrent clients; (seconds, latencies, errors)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=clients)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for i in counter:
            started = time.perf_counter()
            async with session.post(url + "/predict", json={"inputs": texts[i % len(texts)]}) as answer:
                await answer.read()
                if answer.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return seconds, latencies, errors


async def scrape_batches(url: str) -> tuple[float, float]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as answer:
        text = await answer.text()
    values = {m[0]: float(m[1]) for m in re.findall(r"^(spam_tune_batch_size_(?:sum|count)) (\S+)$", text, re.M)}
    return values.get("spam_tune_batch_size_sum", 0.0), values.get("spam_tune_batch_size_count", 0.0)


def http_record(
    model: str, max_batch_size: int, args: argparse.Namespace, clients: int, runs: list[tuple[float, list[float], int]]
) -> dict[str, Any]:
    latencies = [x for _, lat, _ in runs for x in lat]
    seconds = sum(took for took, _, _ in runs)
    return {
        "bench": "http",
        "model": model,
        "backend": args.http_backend,
        "dtype": args.http_dtype or "float32",  # the saved weights are float32
        "batching": "on" if max_batch_size > 1 else "off",
        "max_batch_size": max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "clients": clients,
        "requests": len(latencies),
        "errors": sum(errors for _, _, errors in runs),
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
    }


async def bench_http(
    model_dir: Path, model: str, texts: list[str], args: argparse.Namespace, requests: int
) -> list[dict]:
    """Batching on and off, each its own server process, both up at once; at each concurrency the two are
    measured in alternating halves, so a change in the machine's load hits both alike."""
    sizes = {"on": args.batch_size, "off": 1}
    servers = {}
    for mode, size in sizes.items():
        port = free_port()
        servers[mode] = (f"http://127.0.0.1:{port}", start_server(model_dir, port, size, args))
    records = []
    try:
        for url, process in servers.values():
            await wait_until_up(url, process)
        for clients in args.clients:
            runs: dict[str, list] = {mode: [] for mode in sizes}
            batches = dict.fromkeys(sizes, (0.0, 0.0))
            for url, _ in servers.values():
                await load(url, texts[::7], clients * 2, clients)  # warm-up at this concurrency
            for half in (0, 1):
                for mode, (url, _) in servers.items():
                    before = await scrape_batches(url)
                    runs[mode].append(await load(url, texts[half::2], requests // 2, clients))
                    after = await scrape_batches(url)
                    batches[mode] = tuple(b + a - p for b, a, p in zip(batches[mode], after, before, strict=True))
            for mode, size in sizes.items():
                record = http_record(model, size, args, clients, runs[mode])
                texts_sum, count = batches[mode]
                record["mean_batch_size"] = round(texts_sum / count, 2) if count else None
                records.append(record)
                print(json.dumps(record), flush=True)
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(60)
    return records


def summarize_api(api: list[dict], model: str) -> list[dict]:
    by = {(r["variant"], r["how"]): r for r in api}
    summary = [
        {
            "bench": "summary",
            "model": model,
            "variant": backend,
            "target": "API batched >= 3x one-at-a-time (2 CPU cores), >= 20x on a GPU",
            "measured": by[backend, "batched_length_sorted"]["speedup_vs_one_at_a_time"],
        }
        for backend in dict.fromkeys(b for b, _ in by)
    ]
    if ("onnxruntime", "one_at_a_time") in by and ("torch", "one_at_a_time") in by:
        summary.append(
            {
                "bench": "summary",
                "model": model,
                "target": "issue 8: offer ONNX Runtime if it is faster than torch on CPU",
                "onnxruntime_over_torch_one_at_a_time": by["onnxruntime", "one_at_a_time"]["speedup_vs_torch"],
                "onnxruntime_over_torch_batched": by["onnxruntime", "batched_length_sorted"]["speedup_vs_torch"],
                "max_abs_probability_diff": by["onnxruntime", "one_at_a_time"]["max_abs_probability_diff_vs_torch"],
            }
        )
    return summary


def summarize(results: list[dict]) -> list[dict]:
    """The issue's targets, computed from the measurements above."""
    summary = []
    for model in dict.fromkeys(r["model"] for r in results):
        summary += summarize_api([r for r in results if r["bench"] == "api" and r["model"] == model], model)
        http = {(r["batching"], r["clients"]): r for r in results if r["bench"] == "http" and r["model"] == model}
        top = max((c for _, c in http), default=None)
        if top is not None and ("on", top) in http and ("off", top) in http:
            on, off = http["on", top], http["off", top]
            summary.append(
                {
                    "bench": "summary",
                    "model": model,
                    "target": f"HTTP at {top} clients: batching on >= 3x req/s of off; p99 <= 4x p50",
                    "req_per_s_ratio": round(on["requests_per_s"] / off["requests_per_s"], 2),
                    "p99_over_p50_on": round(on["p99_ms"] / on["p50_ms"], 2),
                    "p99_over_p50_off": round(off["p99_ms"] / off["p50_ms"], 2),
                }
            )
    return summary


def version_of(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    return {
        "command": " ".join(sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "onnxruntime": version_of("onnxruntime"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }


def main() -> int:
    from pipeline.export.onnx import export_onnx
    from pipeline.serve.settings import BACKENDS, DTYPES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the UCI SMSSpamCollection file (label<TAB>text)")
    parser.add_argument("--out", help="write every measurement as JSON here")
    parser.add_argument("--device", help="auto (default), cpu, cuda")
    parser.add_argument("--models", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--batch-size", type=int, default=32, help="API batch size and the server's max batch")
    parser.add_argument("--requests", type=int, default=2000, help="HTTP requests per measurement (smoke)")
    parser.add_argument("--gpt2-requests", type=int, default=150, help="HTTP requests per measurement (gpt2)")
    parser.add_argument(
        "--gpt2-api-messages", type=int, default=500, help="messages in the gpt2 API runs (a fixed random sample)"
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's --max-wait-ms")
    parser.add_argument("--rounds", type=int, default=5, help="API runs interleave the three ways over N slices")
    parser.add_argument("--skip", nargs="*", default=[], choices=["api", "http"])
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["torch"],
        choices=BACKENDS,
        help="API runs: the backends measured side by side (onnxruntime: the folder exported with export --onnx)",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        choices=DTYPES,
        help="API runs: the torch dtypes measured side by side (the models are saved in float32, as served by default)",
    )
    parser.add_argument("--http-backend", default="torch", choices=BACKENDS, help="the HTTP servers' --backend")
    parser.add_argument("--http-dtype", choices=DTYPES, help="the HTTP servers' --dtype (default: as saved, float32)")
    args = parser.parse_args()
    uses_onnx = "onnxruntime" in (*args.backends, args.http_backend)
    if uses_onnx and args.device not in (None, "cpu", "auto"):
        parser.error("the onnxruntime backend runs on CPU; drop --device, or measure --backends torch only")

    texts = read_messages(Path(args.data))
    env = environment(args)
    print(json.dumps({"bench": "environment", **env}), flush=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="serve-speed-") as tmp:
        for model in args.models:
            model_dir = build_model_dir(model, Path(tmp))
            if uses_onnx:
                export_onnx(model_dir)  # adds model.onnx, as `spam-tune export MODEL_DIR --onnx` does
            sample = texts if model == "smoke" else random.Random(0).sample(texts, args.gpt2_api_messages)
            if "api" not in args.skip:
                for record in bench_api(model_dir, model, sample, args):
                    emit(results, record)
            if "http" not in args.skip:
                requests = args.requests if model == "smoke" else args.gpt2_requests
                results += asyncio.run(bench_http(model_dir, model, texts, args, requests))
    for record in summarize(results):
        emit(results, record)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"environment": env, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
