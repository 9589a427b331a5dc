"""The ONNX Runtime backend: ``spam-tune export --onnx`` through the real CLI, the same probabilities as torch,
``serve --backend onnxruntime`` in a subprocess, and one-line refusals (adapter folder, no model.onnx, no package)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import ExportError, ServeError
from pipeline.export.metadata import ModelMetadata
from pipeline.serve.classifier import Classifier
from tests.conftest import toy_rows
from tests.serve.conftest import HAM_TEXT, SPAM_TEXT, free_port, spam_tune_command, subprocess_env, wait_until_up

PROBABILITY_ATOL = 1e-5
"""How far ONNX Runtime's probabilities may be from torch's: both compute in float32, and the tiny models here
measure ~1e-7 (GPT-2 small's logits: ~2e-6, bench/results/onnx-speed-cpu.json)."""
LONG_TEXT = "FREE entry! " * 40  # over the tiny models' max length (32 tokens): truncated as in training
TEXTS = [text for _, text in toy_rows(12)] + [LONG_TEXT, "ok", "?"]


def last_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def onnx_dir(full_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full tiny model exported through the CLI into a new folder (the session's folder stays as it was)."""
    out = tmp_path_factory.mktemp("onnx") / "full-onnx"
    assert main(["export", str(full_model_dir), "--onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def onnx_classifier(onnx_dir: Path) -> Classifier:
    return Classifier(onnx_dir, backend="onnxruntime")


def test_export_writes_a_complete_folder_with_the_graph_and_records_it(onnx_dir: Path, full_model_dir: Path):
    assert {p.name for p in onnx_dir.iterdir()} == {p.name for p in full_model_dir.iterdir()} | {"model.onnx"}
    assert not (full_model_dir / "model.onnx").exists()
    record = ModelMetadata.read(onnx_dir).onnx
    assert record["file"] == "model.onnx" and record["opset"] == 17 and record["dtype"] == "float32"
    assert record["max_abs_logit_diff"] <= 1e-4
    assert ModelMetadata.read(onnx_dir).threshold == ModelMetadata.read(full_model_dir).threshold


def test_onnxruntime_gives_torchs_probabilities_labels_and_batches(onnx_dir: Path, onnx_classifier: Classifier):
    torch_classifier = Classifier(onnx_dir, device="cpu")
    for batch_size in (32, 3):  # several batch cuts, and texts of different lengths in one batch
        torch_classifier.batch_size = onnx_classifier.batch_size = batch_size
        expected = torch_classifier.probabilities(TEXTS).numpy()
        got = onnx_classifier.probabilities(TEXTS).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=PROBABILITY_ATOL)
    one_at_a_time = np.concatenate([onnx_classifier.probabilities([t]).numpy() for t in TEXTS[:8]])
    np.testing.assert_allclose(one_at_a_time, expected[:8], rtol=0, atol=PROBABILITY_ATOL)
    assert [p.label for p in onnx_classifier.predict(TEXTS)] == [p.label for p in torch_classifier.predict(TEXTS)]
    assert onnx_classifier.device.type == "cpu" and onnx_classifier.model is None  # no torch weights loaded


def test_onnxruntime_refuses_bad_inputs_like_torch(onnx_classifier: Classifier, full_classifier: Any):
    for bad in (["fine", "  "], ["\ud800 broken"]):
        with pytest.raises(ServeError) as torch_error:
            full_classifier.predict(bad)
        with pytest.raises(ServeError) as onnx_error:
            onnx_classifier.predict(bad)
        assert str(onnx_error.value) == str(torch_error.value)
    assert onnx_classifier.logits([]).shape == (0, 2)


def test_predict_cli_with_the_onnxruntime_backend(onnx_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["predict", str(onnx_dir), SPAM_TEXT, HAM_TEXT, "--backend", "onnxruntime"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["label"] for row in rows] == ["spam", "ham"]
    expected = Classifier(onnx_dir, device="cpu").probabilities([SPAM_TEXT, HAM_TEXT]).numpy()
    got = np.array([[row["probabilities"]["ham"], row["probabilities"]["spam"]] for row in rows])
    np.testing.assert_allclose(got, expected, rtol=0, atol=PROBABILITY_ATOL)


def test_serve_with_the_onnxruntime_backend_answers_predict(onnx_dir: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*spam_tune_command(), "serve", str(onnx_dir), "--backend", "onnxruntime", "--port", str(port)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        wait_until_up(url, process)
        answer = httpx.post(url + "/predict", json={"inputs": [SPAM_TEXT, HAM_TEXT]}, timeout=60)
        info = httpx.get(url + "/info").json()
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert answer.status_code == 200, answer.text
    assert [row[0]["label"] for row in answer.json()] == ["spam", "ham"]
    expected = Classifier(onnx_dir, device="cpu").probabilities([SPAM_TEXT, HAM_TEXT]).numpy()
    got = np.array([{p["label"]: p["score"] for p in row}["spam"] for row in answer.json()])
    np.testing.assert_allclose(got, expected[:, 1], rtol=0, atol=PROBABILITY_ATOL)
    assert info["backend"] == "onnxruntime" and info["device"] == "cpu" and info["model_dtype"] == "float32"
    assert info["versions"]["onnxruntime"]
    assert code == 0


def test_a_merged_folder_exports_in_place(merged_model_dir: Path, tmp_path: Path):
    folder = shutil.copytree(merged_model_dir, tmp_path / "merged")
    before = {p.name for p in folder.iterdir()}
    assert main(["export", str(folder), "--onnx"]) == 0  # no --out: model.onnx is added to the folder itself
    assert {p.name for p in folder.iterdir()} == before | {"model.onnx"}
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no hidden temp or old sibling left
    expected = Classifier(folder, device="cpu").probabilities(TEXTS).numpy()
    got = Classifier(folder, backend="onnxruntime").probabilities(TEXTS).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=PROBABILITY_ATOL)


def test_a_failed_export_leaves_the_folder_as_it_was(
    full_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from pipeline.export import onnx

    def broken(model: Any, batch: Any, path: Path) -> None:
        path.write_bytes(b"half a graph")
        raise ExportError("torch.onnx.export failed on this model (unsupported operator)")

    folder = shutil.copytree(full_model_dir, tmp_path / "model")
    before = sorted((p.name, p.stat().st_size) for p in folder.iterdir())
    monkeypatch.setattr(onnx, "trace_to_onnx", broken)
    assert main(["export", str(folder), "--onnx"]) == 2
    assert last_error_line(capsys) == "error: torch.onnx.export failed on this model (unsupported operator)"
    assert sorted((p.name, p.stat().st_size) for p in folder.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_an_adapter_folder_is_refused_naming_merge(lora_model_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["export", str(lora_model_dir), "--onnx"]) == 2
    err = last_error_line(capsys)
    assert err.startswith("error: ") and "holds a LoRA/QLoRA adapter" in err and "spam-tune merge" in err, err
    assert main(["serve", str(lora_model_dir), "--backend", "onnxruntime", "--port", "0"]) == 2
    err = last_error_line(capsys)
    assert "spam-tune merge" in err and "spam-tune export MERGED_DIR --onnx" in err, err
    assert not (lora_model_dir / "model.onnx").exists()


@pytest.mark.parametrize("command", ["serve", "predict"])
def test_a_folder_without_model_onnx_is_refused_naming_the_export_command(
    command: str, full_model_dir: Path, capsys: pytest.CaptureFixture[str]
):
    given = [str(full_model_dir), "--port", "0"] if command == "serve" else [str(full_model_dir), "hello"]
    assert main([command, *given, "--backend", "onnxruntime"]) == 2
    assert last_error_line(capsys) == (
        f"error: {full_model_dir} has no model.onnx; write it with: spam-tune export {full_model_dir} --onnx "
        "(or use --backend torch)"
    )


def test_a_missing_onnxruntime_names_the_extra(
    onnx_dir: Path, full_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    assert main(["predict", str(onnx_dir), "hello", "--backend", "onnxruntime"]) == 2
    assert last_error_line(capsys) == (
        "error: --backend onnxruntime needs the onnxruntime package (not installed): pip install 'spam-tune[onnx]'"
    )
    assert main(["export", str(full_model_dir), "--onnx", "--out", str(onnx_dir.parent / "never")]) == 2
    assert "needs onnxruntime (not installed): pip install 'spam-tune[onnx]'" in last_error_line(capsys)


def test_onnxruntime_runs_on_cpu_only(onnx_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine: auto would pick CUDA
    assert Classifier(onnx_dir, backend="onnxruntime").device.type == "cpu"
    with pytest.raises(ServeError, match="--backend onnxruntime runs on CPU; drop --device cuda"):
        Classifier(onnx_dir, backend="onnxruntime", device="cuda")
    with pytest.raises(ServeError, match=r"onnxruntime runs the float32 model\.onnx; drop --dtype float16"):
        Classifier(onnx_dir, backend="onnxruntime", dtype="float16")
    with pytest.raises(ServeError, match="unknown backend 'tensorrt'"):
        Classifier(onnx_dir, backend="tensorrt")


def test_serving_with_onnxruntime_loads_no_exporter(onnx_dir: Path):
    # A fresh interpreter: serving modules import no onnxruntime until asked, and classifying loads no exporter.
    code = (
        "import json, sys\n"
        "import pipeline.serve.app, pipeline.serve.server, pipeline.serve.predict_file, pipeline.cli\n"
        "before = 'onnxruntime' in sys.modules\n"
        "from pipeline.serve.classifier import Classifier\n"
        f"Classifier({str(onnx_dir)!r}, backend='onnxruntime').predict(['hello'])\n"
        "loaded = [m for m in ('torch.onnx', 'onnx', 'pipeline.export.onnx', 'onnxruntime') if m in sys.modules]\n"
        "print(json.dumps([before, loaded]))\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=subprocess_env()
    )
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout.splitlines()[-1]) == [False, ["onnxruntime"]]
