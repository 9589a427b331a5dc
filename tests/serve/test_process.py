"""The real command line: ``spam-tune serve`` in a subprocess (SIGTERM drains and exits 0), every model-folder
kind serves, Hugging Face's InferenceClient talks to the server, and the serving modules import no training stack."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.serve.app import create_app
from tests.serve.conftest import (
    HAM_TEXT,
    SPAM_TEXT,
    free_port,
    running,
    spam_tune_command,
    subprocess_env,
    wait_until_up,
)

TRAINING_STACK = ("transformers.trainer", "datasets", "evaluate", "sklearn", "matplotlib")


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(full_model_dir: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A 3 s batching wait keeps the request in flight long enough to send SIGTERM while it waits.
    command = [*spam_tune_command(), "serve", str(full_model_dir), "--port", str(port), "--max-wait-ms", "3000"]
    env = subprocess_env()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until_up(url, process)
        result: dict[str, Any] = {}
        request = threading.Thread(
            target=lambda: result.update(answer=httpx.post(url + "/predict", json={"inputs": SPAM_TEXT}, timeout=60))
        )
        request.start()
        deadline = time.monotonic() + 30
        while "spam_tune_texts_in_flight 1.0" not in httpx.get(url + "/metrics").text:  # the request is waiting
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        request.join(60)
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = process.stderr.read()
    assert result["answer"].status_code == 200 and result["answer"].json()[0]["label"] == "spam"
    assert code == 0, log
    assert "stopped by SIGTERM after in-flight requests finished" in log and "Traceback" not in log


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["MISSING"], "model dir"),
        (["MODEL", "--max-batch-size", "0"], "--max-batch-size must be at least 1"),
        (["MODEL", "--max-queue", "4"], "--max-queue (4) is below --max-inputs-per-request"),
        (["MODEL", "--device", "tpu9"], "unknown device 'tpu9'"),
        (["MODEL", "--host", "no such host"], "cannot use --host"),
    ],
)
def test_serve_refuses_bad_options_and_missing_models_with_one_line(
    args: list[str], words: str, tmp_path: Path, full_model_dir: Path, capsys: pytest.CaptureFixture[str]
):
    from pipeline.cli import main

    where = {"MISSING": str(tmp_path / "nope"), "MODEL": str(full_model_dir)}
    assert main(["serve", *[where.get(a, a) for a in args], "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and words in err, err


def test_a_port_in_use_is_a_clear_error(full_model_dir: Path):
    from pipeline.errors import ServeError
    from pipeline.serve.server import bind

    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(ServeError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*pass a free --port"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_full_lora_and_merged_folders_all_serve(full_model_dir: Path, lora_model_dir: Path, merged_model_dir: Path):
    from pipeline.serve.classifier import Classifier

    answers, infos = {}, {}
    for kind, folder in {"full": full_model_dir, "lora": lora_model_dir, "merged": merged_model_dir}.items():
        with running(create_app(Classifier(folder, device="cpu"))) as url:
            answers[kind] = httpx.post(url + "/predict", json={"inputs": [SPAM_TEXT, HAM_TEXT]}).json()
            infos[kind] = httpx.get(url + "/info").json()
    assert [row[0]["label"] for row in answers["full"]] == ["spam", "ham"]
    assert infos["lora"]["mode"] == "lora" and infos["full"]["mode"] == "full"
    # The merged folder is the adapter folded into its base: same probabilities, served as a plain model.
    for lora_row, merged_row in zip(answers["lora"], answers["merged"], strict=True):
        scores = {p["label"]: p["score"] for p in lora_row}
        assert {p["label"]: p["score"] for p in merged_row} == pytest.approx(scores, abs=1e-5)


def test_huggingface_inference_client_text_classification(server: str, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import InferenceClient, constants

    # The suite runs with HF_HUB_OFFLINE=1, which blocks every client request; this one only reaches 127.0.0.1.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    client = InferenceClient(base_url=server)
    spam = client.text_classification(SPAM_TEXT)
    assert [e.label for e in spam] == ["spam", "ham"] and sum(e.score for e in spam) == pytest.approx(1, abs=1e-6)
    top = client.text_classification(HAM_TEXT, top_k=1)
    assert len(top) == 1 and top[0].label == "ham"
    raw = client.text_classification(SPAM_TEXT, function_to_apply="none")
    assert sum(e.score for e in raw) != pytest.approx(1, abs=1e-3)  # logits, not probabilities


def test_serving_imports_no_training_stack_even_after_classifying(lora_model_dir: Path):
    # A fresh interpreter: import every serving module and the CLI, then load an adapter folder and classify.
    code = (
        "import json, sys\n"
        "import pipeline.serve.app, pipeline.serve.server, pipeline.serve.files, pipeline.serve.predict_file\n"
        "import pipeline.cli\n"
        f"stack = {list(TRAINING_STACK)!r}\n"
        "after_import = [m for m in stack if m in sys.modules]\n"
        "from pipeline.serve.classifier import Classifier\n"
        f"Classifier({str(lora_model_dir)!r}, device='cpu').predict(['hello'])\n"
        "print(json.dumps([after_import, [m for m in stack if m in sys.modules]]))\n"
    )
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout.strip().splitlines()[-1]) == [[], []]
