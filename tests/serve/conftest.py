"""Fixtures of the serving tests: tiny model folders built once per session through the real CLI, and a
real uvicorn server on 127.0.0.1 (a free port), started and stopped inside the test that uses it.

The model-folder fixtures live here, in one place, so they can be re-pointed when the export stage moves.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tiny_overrides, write_toy_data

SPAM_TEXT = "URGENT you have won a cash award txt WIN to 80111"
HAM_TEXT = "are we still meeting for lunch at 12"


# Serving needs a model folder, not the run's report: skip plots and report to keep the suite fast.
FAST = {"evaluation.plots": False, "evaluation.report": False, "evaluation.epoch_train_rows": 16}


def train_model_dir(root: Path, name: str, **extra: object) -> Path:
    """Train a tiny model on the toy data through ``spam-tune train``; returns its model folder."""
    from pipeline.cli import main

    data = root / "toy.tsv"
    if not data.exists():
        write_toy_data(data)
    overrides = tiny_overrides(data, root / name, root / "cache", **{**FAST, **extra})
    assert main(["train", "--config", "configs/smoke.yaml", *overrides]) == 0
    return root / name / "model"


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-models")


@pytest.fixture(scope="session")
def full_model_dir(models_root: Path) -> Path:
    """A full fine-tune that separates the toy classes, with a decision threshold chosen for best F1."""
    return train_model_dir(models_root, "full", **{"evaluation.threshold": "best_f1"})


@pytest.fixture(scope="session")
def lora_model_dir(models_root: Path) -> Path:
    """A LoRA run's folder: adapter + head, and the random base it was trained on."""
    return train_model_dir(
        models_root,
        "lora",
        **{"model.mode": "lora", "adapter.target_modules": "[c_attn]", "training.num_train_epochs": 1},
    )


@pytest.fixture(scope="session")
def merged_model_dir(lora_model_dir: Path, models_root: Path) -> Path:
    """The LoRA run folded into its base by ``spam-tune merge``: a plain transformers folder."""
    from pipeline.cli import main

    merged = models_root / "merged"
    assert main(["merge", str(lora_model_dir), "--out", str(merged)]) == 0
    return merged


@pytest.fixture(scope="session")
def full_classifier(full_model_dir: Path) -> Any:
    from pipeline.serve.classifier import Classifier

    return Classifier(full_model_dir, device="cpu")


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on 127.0.0.1:<free port>; yields the base URL, stops on exit."""
    import uvicorn

    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


@pytest.fixture(scope="module")
def server(full_classifier: Any) -> Iterator[str]:
    """Base URL of a server for the full tiny model with small limits that tests can reach."""
    from pipeline.serve.app import create_app
    from pipeline.serve.settings import ServeSettings

    settings = ServeSettings(max_input_chars=500, max_inputs_per_request=8, max_body_bytes=20_000, max_queue=64)
    with running(create_app(full_classifier, settings)) as url:
        yield url


def spam_tune_command() -> list[str]:
    """The installed ``spam-tune`` script beside this interpreter, else the same entry point through ``-m``."""
    script = Path(sys.executable).with_name("spam-tune")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline.cli"]


def subprocess_env() -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH, so the subprocess runs the code under test."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}


def wait_until_up(url: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}: {process.stderr.read()}"
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not come up")
