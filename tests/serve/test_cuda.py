"""Serving on CUDA: the same answers as on CPU. ``pytest -m gpu tests/serve/test_cuda.py`` on a GPU machine."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from pipeline.serve.app import create_app
from tests.serve.conftest import HAM_TEXT, SPAM_TEXT, running

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_server_answers_as_the_cpu_classifier(full_model_dir: Path, lora_model_dir: Path, full_classifier):
    from pipeline.serve.classifier import Classifier

    texts = [SPAM_TEXT, HAM_TEXT, "see you at 6? " * 20]
    for folder in (full_model_dir, lora_model_dir):
        cuda = Classifier(folder, device="cuda")
        assert cuda.device.type == "cuda"
        cpu_probs = Classifier(folder, device="cpu").probabilities(texts).numpy()
        with running(create_app(cuda)) as url:
            rows = httpx.post(url + "/predict", json={"inputs": texts}).json()
            info = httpx.get(url + "/info").json()
        assert info["device"].startswith("cuda")
        for row, expected in zip(rows, cpu_probs, strict=True):
            assert {p["label"]: p["score"] for p in row} == pytest.approx(
                {"ham": expected[0], "spam": expected[1]}, abs=1e-4
            )
