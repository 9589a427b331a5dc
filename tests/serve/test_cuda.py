"""Serving on CUDA: the same answers as on CPU. ``pytest -m gpu tests/serve/test_cuda.py`` on a GPU machine."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from pipeline.serve.app import create_app
from tests.conftest import BF16_TOLERANCE
from tests.serve.conftest import HAM_TEXT, SPAM_TEXT, running

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_server_answers_as_the_cpu_classifier(
    full_model_dir: Path, lora_model_dir: Path, full_classifier, dtype: str
):
    from pipeline.serve.classifier import Classifier

    texts = [SPAM_TEXT, HAM_TEXT, "see you at 6? " * 20]
    # float32: the CPU's answers up to kernel rounding; bfloat16: within its 8 significant bits (passed on an
    # H200, 2026-11-26; see tests/serve/test_dtype.py for the CPU measurement).
    tolerance = 1e-4 if dtype == "float32" else BF16_TOLERANCE
    for folder in (full_model_dir, lora_model_dir):
        cuda = Classifier(folder, device="cuda", dtype=dtype)
        assert cuda.device.type == "cuda"
        assert cuda.dtype == getattr(torch, dtype)
        cpu_probs = Classifier(folder, device="cpu").probabilities(texts).numpy()
        with running(create_app(cuda)) as url:
            rows = httpx.post(url + "/predict", json={"inputs": texts}).json()
            info = httpx.get(url + "/info").json()
        assert info["device"].startswith("cuda")
        assert info["model_dtype"] == str(cuda.dtype).removeprefix("torch.")
        for row, expected in zip(rows, cpu_probs, strict=True):
            assert {p["label"]: p["score"] for p in row} == pytest.approx(
                {"ham": expected[0], "spam": expected[1]}, abs=tolerance
            )
