"""``--dtype``: the weights as saved by default (float32); bfloat16/float16 on request, within their precision."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.errors import ServeError
from pipeline.serve.app import create_app
from pipeline.serve.backends import resolve_dtype
from pipeline.serve.classifier import Classifier
from tests.conftest import BF16_TOLERANCE
from tests.serve.conftest import HAM_TEXT, SPAM_TEXT, running

REPO = Path(__file__).resolve().parents[2]
TEXTS = [SPAM_TEXT, HAM_TEXT, "see you at 6? " * 20, "WIN cash now!!! call 0800", "ok"]


def test_the_saved_dtype_is_the_default_and_half_precision_a_choice():
    assert resolve_dtype(None, "torch") is None  # as saved: no cast (a QLoRA base stays 4-bit)
    assert Classifier.__init__.__kwdefaults__["dtype"] is None
    assert resolve_dtype("float32", "torch") == torch.float32
    assert resolve_dtype("bfloat16", "torch") == torch.bfloat16
    assert resolve_dtype("float16", "torch") == torch.float16


def test_bad_dtypes_are_refused_naming_the_choices():
    with pytest.raises(ServeError, match="unknown dtype 'int8'; pass one of float32, bfloat16, float16"):
        resolve_dtype("int8", "torch")
    with pytest.raises(ServeError, match=r"onnxruntime runs the float32 model\.onnx; drop --dtype bfloat16"):
        resolve_dtype("bfloat16", "onnxruntime")
    assert resolve_dtype("float32", "onnxruntime") == torch.float32


@pytest.mark.parametrize("folder", ["full_model_dir", "lora_model_dir"])
def test_bfloat16_serves_the_float32_answers_within_its_precision(folder: str, request: pytest.FixtureRequest):
    model_dir = request.getfixturevalue(folder)
    exact = Classifier(model_dir, device="cpu")
    half = Classifier(model_dir, device="cpu", dtype="bfloat16")
    assert exact.backend.dtype == "float32" and half.backend.dtype == "bfloat16"
    expected = exact.probabilities(TEXTS).numpy()
    with running(create_app(half)) as url:
        rows = httpx.post(url + "/predict", json={"inputs": TEXTS}, timeout=60).json()
        info = httpx.get(url + "/info", timeout=60).json()
    assert info["model_dtype"] == "bfloat16"
    got = np.array([[{p["label"]: p["score"] for p in row}[label] for label in ("ham", "spam")] for row in rows])
    # bfloat16 keeps 8 significant bits: one rounding moves a value by up to 2**-8 of itself. Measured on these
    # 2-block models: 7.5e-4 at most (CPU, 2026-11-26).
    np.testing.assert_allclose(got, expected, rtol=0, atol=BF16_TOLERANCE)
    clear = np.abs(expected[:, 1] - 0.5) > BF16_TOLERANCE  # a decision this close to 0.5 may flip: not asserted
    assert (got.argmax(1) == expected.argmax(1))[clear].all()


def test_predict_cli_takes_the_dtype(full_model_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["predict", str(full_model_dir), SPAM_TEXT, HAM_TEXT, "--dtype", "float32"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Classifier(full_model_dir, device="cpu").probabilities([SPAM_TEXT, HAM_TEXT]).numpy()
    got = np.array([[row["probabilities"]["ham"], row["probabilities"]["spam"]] for row in rows])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert main(["predict", str(full_model_dir), SPAM_TEXT, "--dtype", "bfloat16"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        main(["predict", str(full_model_dir), SPAM_TEXT, "--dtype", "int8"])
    assert bad.value.code == 2
    assert "invalid choice: 'int8'" in capsys.readouterr().err


def test_a_qlora_folder_keeps_its_4bit_base_and_refuses_a_cast(full_model_dir: Path, tmp_path: Path):
    # A folder whose metadata records a 4-bit base (as a QLoRA adapter's does): casting would rewrite the base's
    # non-quantized weights and change the model training reported on, so only the saved dtype serves.
    folder = tmp_path / "qlora-like"
    shutil.copytree(full_model_dir, folder)
    meta = json.loads((folder / "spam_tune.json").read_text())
    meta["quantization"] = {"quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"}
    (folder / "spam_tune.json").write_text(json.dumps(meta))
    assert Classifier(folder, device="cpu").backend.dtype == "float32"
    with pytest.raises(ServeError, match=r"4-bit base, which cannot be cast to bfloat16; drop --dtype, or merge"):
        Classifier(folder, device="cpu", dtype="bfloat16")


def test_the_dtype_agreement_bench_compares_every_message(full_model_dir: Path, tmp_path: Path):
    # bench/dtype_agreement.py as a user runs it: a UCI-format file in, float32 vs bfloat16 decisions out.
    data = tmp_path / "SMSSpamCollection"
    rows = [f"{'spam' if i % 2 else 'ham'}\t{text}\n" for i, text in enumerate(TEXTS)]
    data.write_text("".join(rows), encoding="utf-8")
    out = tmp_path / "agreement.json"
    command = [sys.executable, str(REPO / "bench" / "dtype_agreement.py"), str(full_model_dir), "--data", str(data)]
    done = subprocess.run([*command, "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["messages"] == len(TEXTS) and record["dtype"] == "bfloat16" and record["device"] == "cpu"
    expected = Classifier(full_model_dir, device="cpu").probabilities(TEXTS).numpy()
    got = Classifier(full_model_dir, device="cpu", dtype="bfloat16").probabilities(TEXTS).numpy()
    assert record["probability_gap"]["max"] == pytest.approx(np.abs(expected - got).max(), abs=1e-5)
    assert 0 <= record["decisions_that_differ"] <= len(TEXTS)
    assert record["threshold"] == Classifier(full_model_dir, device="cpu").threshold
