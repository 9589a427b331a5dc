"""The server over real HTTP on 127.0.0.1: TEI shapes, the decision threshold, batching, limits and errors."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from pipeline.serve.app import create_app
from pipeline.serve.settings import ServeSettings
from tests.serve.conftest import HAM_TEXT, SPAM_TEXT, running


def post(url: str, body: Any, path: str = "/predict", **kwargs: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30, **kwargs)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            sample, value = line.rsplit(" ", 1)
            found = dict(re.findall(r'(\w+)="([^"]*)"', sample))
            if sample.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
                return float(value)
    return 0.0


def test_single_text_gets_tei_labels_with_the_decided_one_first(server: str, full_classifier: Any):
    answer = post(server, {"inputs": SPAM_TEXT})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert [set(p) for p in body] == [{"label", "score"}] * 2
    assert {p["label"] for p in body} == {"ham", "spam"}
    assert sum(p["score"] for p in body) == pytest.approx(1, abs=1e-6)
    expected = full_classifier.predict([SPAM_TEXT])[0]
    assert body[0]["label"] == expected.label == "spam"
    assert body[0]["score"] == pytest.approx(expected.score, abs=1e-6)


def test_both_batch_forms_answer_one_list_per_text_in_order(server: str, full_classifier: Any):
    texts = [HAM_TEXT, SPAM_TEXT, "see you soon", "FREE entry to win a brand new phone, reply YES to 80444"]
    flat = post(server, {"inputs": texts}).json()
    tei = post(server, {"inputs": [[t] for t in texts]}).json()
    assert flat == tei and len(flat) == len(texts)
    expected = full_classifier.predict(texts)
    assert [row[0]["label"] for row in flat] == [p.label for p in expected]
    for row, p in zip(flat, expected, strict=True):
        assert {e["label"]: e["score"] for e in row} == pytest.approx(p.probabilities, abs=1e-6)


def test_post_root_is_predict_and_parameters_give_the_inference_api_shape(server: str):
    assert post(server, {"inputs": SPAM_TEXT}, "/").json() == post(server, {"inputs": SPAM_TEXT}).json()
    nested = post(server, {"inputs": SPAM_TEXT, "parameters": {}}, "/").json()
    assert nested == [post(server, {"inputs": SPAM_TEXT}).json()]
    top1 = post(server, {"inputs": [HAM_TEXT, SPAM_TEXT], "parameters": {"top_k": 1}}, "/").json()
    assert [[p["label"] for p in row] for row in top1] == [["ham"], ["spam"]]


def test_raw_scores_and_function_to_apply(server: str, full_classifier: Any):
    logits = full_classifier.logits([SPAM_TEXT])[0]
    raw = {p["label"]: p["score"] for p in post(server, {"inputs": SPAM_TEXT, "raw_scores": True}).json()}
    assert [raw["ham"], raw["spam"]] == pytest.approx(logits.tolist(), abs=1e-5)
    none = post(server, {"inputs": SPAM_TEXT, "parameters": {"function_to_apply": "none"}}).json()[0]
    assert {p["label"]: p["score"] for p in none} == pytest.approx(raw, abs=1e-6)
    sig = post(server, {"inputs": SPAM_TEXT, "parameters": {"function_to_apply": "sigmoid"}}).json()[0]
    expected = 1 / (1 + np.exp(-logits))
    assert [p["score"] for p in sorted(sig, key=lambda p: p["label"])] == pytest.approx(expected.tolist(), abs=1e-6)
    assert sig[0]["label"] == "spam"  # still the model's decision first


def test_the_saved_threshold_decides_even_against_the_higher_probability(full_classifier: Any):
    eager = copy.copy(full_classifier)  # same model, a threshold that calls nearly everything spam
    eager.threshold = 1e-6
    with running(create_app(eager)) as url:
        body = post(url, {"inputs": HAM_TEXT}).json()
        info = httpx.get(url + "/info").json()
    assert body[0]["label"] == "spam" and body[0]["score"] < 0.5 < body[1]["score"]
    assert info["threshold"] == 1e-6 and info["decision"].startswith("spam if p(spam) >= 1e-06")


def test_truncation_as_in_training_unless_refused(server: str, full_classifier: Any):
    long_text = SPAM_TEXT + " and more" * 30  # far over the tiny model's 32 tokens
    truncated = post(server, {"inputs": long_text}).json()
    assert truncated == post(server, {"inputs": long_text, "truncate": True}).json()
    assert truncated[0]["score"] == pytest.approx(full_classifier.predict([long_text])[0].score, abs=1e-6)
    refused = post(server, {"inputs": ["fine", long_text], "truncate": False})
    assert refused.status_code == 413
    assert "inputs[1] has" in refused.json()["error"] and "max length 32" in refused.json()["error"]


def test_concurrent_requests_are_batched_and_all_answered_correctly(full_classifier: Any):
    # A long wait and a batch of 4: four concurrent requests must share exactly one forward pass.
    settings = ServeSettings(max_batch_size=4, max_wait_ms=5_000)
    texts = [HAM_TEXT, SPAM_TEXT, "call me later", "WINNER! claim your FREE prize now, call 80999"]
    with running(create_app(full_classifier, settings)) as url, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda t: post(url, {"inputs": t}).json(), texts))
        metrics = httpx.get(url + "/metrics").text
    assert [a[0]["label"] for a in answers] == [p.label for p in full_classifier.predict(texts)]
    assert metric(metrics, "spam_tune_batch_size_count") == 1
    assert metric(metrics, "spam_tune_batch_size_sum") == 4


def test_many_concurrent_clients_bounded(server: str, full_classifier: Any):
    texts = [f"{SPAM_TEXT} {i}" if i % 2 else f"{HAM_TEXT} {i}" for i in range(48)]
    expected = [p.label for p in full_classifier.predict(texts)]
    with httpx.Client(base_url=server, timeout=30) as client, ThreadPoolExecutor(12) as pool:
        labels = list(pool.map(lambda t: client.post("/predict", json={"inputs": t}).json()[0]["label"], texts))
    assert labels == expected


BAD_REQUESTS = [
    # (body as bytes or JSON, headers, status, words in the message)
    (b'{"inputs": "a",}', {}, 400, "malformed JSON"),
    (b"", {}, 422, "body is empty"),
    (b'{"inputs": "a"}', {"content-type": "text/plain"}, 415, "Content-Type is 'text/plain'"),
    (b'{"inputs": "a"}', {"content-type": ""}, 415, "Content-Type is missing"),
    ({"input": "a"}, {}, 422, "missing field inputs"),
    ([1, 2], {}, 422, "must be a JSON object"),
    ({"inputs": []}, {}, 422, "inputs is an empty list"),
    ({"inputs": 5}, {}, 422, "inputs is a number"),
    ({"inputs": ["ok", 3]}, {}, 422, "inputs[1] is a number, not a string"),
    ({"inputs": [["ok"], [None]]}, {}, 422, "inputs[1][0] is null"),
    ({"inputs": [["a", "b"]]}, {}, 422, "sentence pair"),
    ({"inputs": ["ok", ""]}, {}, 422, "inputs[1] is empty"),
    ({"inputs": "   "}, {}, 422, "inputs is empty or only whitespace"),
    ({"inputs": ["t"] * 9}, {}, 413, "9 inputs in one request, more than --max-inputs-per-request 8"),
    ({"inputs": "x" * 501}, {}, 413, "inputs has 501 characters, more than --max-input-chars 500"),
    ({"inputs": "a", "temperature": 1}, {}, 422, "unknown field temperature"),
    ({"inputs": "a", "parameters": {"top_p": 1}}, {}, 422, "unknown field parameters.top_p"),
    ({"inputs": "a", "parameters": {"top_k": 0}}, {}, 422, "parameters.top_k"),
    ({"inputs": "a", "parameters": {"function_to_apply": "relu"}}, {}, 422, "function_to_apply"),
    ({"inputs": "a", "raw_scores": True, "parameters": {"function_to_apply": "softmax"}}, {}, 422, "contradicts"),
    ({"inputs": "a", "truncation_direction": "left"}, {}, 422, "left is not supported"),
    ({"inputs": "a", "truncate": "maybe"}, {}, 422, "truncate"),
]


@pytest.mark.parametrize(("body", "headers", "status", "words"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_with_one_clear_json_line(
    server: str, body: Any, headers: dict[str, str], status: int, words: str
):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"content-type": "application/json", **headers}
    answer = httpx.post(server + "/predict", content=content, headers={k: v for k, v in sent.items() if v})
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert set(error) == {"error", "error_type"} and error["error_type"] == "validation"
    assert words in error["error"] and "\n" not in error["error"]


def test_bodies_over_the_limit_are_refused_by_length_and_while_streaming(server: str):
    big = json.dumps({"inputs": "x" * 30_000}).encode()
    declared = httpx.post(server + "/predict", content=big, headers={"content-type": "application/json"})
    streamed = httpx.post(  # no Content-Length: chunked transfer, counted as it arrives
        server + "/predict",
        content=(big[i : i + 4096] for i in range(0, len(big), 4096)),
        headers={"content-type": "application/json"},
    )
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json() == {
            "error": "request body is larger than --max-body-bytes 20000; send fewer or shorter texts per request",
            "error_type": "validation",
        }
    assert "content-length" not in {k.lower() for k in streamed.request.headers}


def test_unknown_routes_and_methods_use_the_same_error_shape(server: str):
    missing = httpx.get(server + "/v1/classify")
    wrong = httpx.put(server + "/predict")
    assert missing.status_code == 404 and "no route /v1/classify" in missing.json()["error"]
    assert wrong.status_code == 405 and wrong.json()["error_type"] == "validation"


class FailingClassifier:
    """A real classifier whose forward pass raises for any batch holding the word BOOM."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.id2label, self.max_length = real.id2label, real.max_length
        self.threshold, self.positive, self.metadata = real.threshold, real.positive, real.metadata

    def logits(self, texts: list[str]) -> np.ndarray:
        if any("BOOM" in t for t in texts):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return self.real.logits(texts)

    def token_counts(self, texts: list[str]) -> list[int]:
        return self.real.token_counts(texts)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        return self.real.decide(probabilities)


def test_a_failing_forward_pass_answers_503_and_the_server_keeps_serving(full_classifier: Any):
    with running(create_app(FailingClassifier(full_classifier))) as url:
        failed = post(url, {"inputs": "BOOM"})
        after = post(url, {"inputs": SPAM_TEXT})
        health = httpx.get(url + "/health")
        metrics = httpx.get(url + "/metrics").text
    assert failed.status_code == 503
    assert failed.json() == {
        "error": "the model failed on the batch holding this request "
        "(RuntimeError: CUDA error: device-side assert triggered); retry",
        "error_type": "backend",
    }
    assert after.status_code == 200 and after.json()[0]["label"] == "spam"
    assert health.status_code == 200
    assert metric(metrics, "spam_tune_batches_failed_total") == 1
    assert metric(metrics, "spam_tune_errors_total", error_type="backend", status="503") == 1


class GatedClassifier(FailingClassifier):
    """Holds every forward pass until the test opens the gate: lets a test fill the queue."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.gate = threading.Event()

    def logits(self, texts: list[str]) -> np.ndarray:
        assert self.gate.wait(30)
        return super().logits(texts)


def wait_for_queue(url: str, texts: int) -> None:
    deadline = time.monotonic() + 20
    while metric(httpx.get(url + "/metrics").text, "spam_tune_queue_texts") != texts:
        assert time.monotonic() < deadline, "the queue never reached the expected size"
        time.sleep(0.02)


def test_a_full_queue_answers_429_and_drains_afterwards(full_classifier: Any):
    gated = GatedClassifier(full_classifier)
    settings = ServeSettings(max_batch_size=1, max_wait_ms=0, max_inputs_per_request=4, max_queue=4)
    with running(create_app(gated, settings)) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, url, {"inputs": HAM_TEXT})  # taken by the worker, which waits at the gate
        wait_for_queue(url, 0)
        time.sleep(0.2)
        queued = pool.submit(post, url, {"inputs": [SPAM_TEXT] * 4})
        wait_for_queue(url, 4)
        refused = post(url, {"inputs": HAM_TEXT})
        gated.gate.set()
        assert first.result().status_code == 200 and queued.result().status_code == 200
    assert refused.status_code == 429
    assert refused.json()["error_type"] == "overloaded" and "limit 4" in refused.json()["error"]


def test_health_info_and_metrics(server: str, full_classifier: Any):
    post(server, {"inputs": [HAM_TEXT, SPAM_TEXT]})
    post(server, {"inputs": []})
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    info = httpx.get(server + "/info").json()
    assert info["labels"] == ["ham", "spam"] and info["positive_label"] == "spam"
    assert info["threshold"] == full_classifier.threshold and info["threshold_strategy"] == "best_f1"
    assert info["max_input_length"] == 32 and info["mode"] == "full" and info["device"] == "cpu"
    assert info["model_type"]["classifier"]["id2label"] == {"0": "ham", "1": "spam"}
    assert info["limits"]["max_inputs_per_request"] == 8 and info["max_client_batch_size"] == 8
    assert {"python", "torch", "transformers", "fastapi"} <= set(info["versions"]) and info["versions"]["torch"]
    answer = httpx.get(server + "/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert metric(text, "spam_tune_http_requests_total", method="POST", path="/predict", status="200") >= 1
    assert metric(text, "spam_tune_http_requests_total", method="POST", path="/predict", status="422") >= 1
    assert metric(text, "spam_tune_http_request_duration_seconds_count", method="POST", path="/predict") >= 2
    assert 'spam_tune_http_request_duration_seconds_bucket{le="0.005",method="POST",path="/predict"}' in text
    assert metric(text, "spam_tune_batch_size_count") >= 1 and metric(text, "spam_tune_texts_classified_total") >= 2
    assert metric(text, "spam_tune_errors_total", error_type="validation", status="422") >= 1
    assert "# TYPE spam_tune_batch_size histogram" in text and "process_resident_memory_bytes" in text


def test_openapi_page_is_served_offline_and_documents_both_batch_forms(server: str):
    docs = httpx.get(server + "/docs").text
    assert "cdn" not in docs.lower() and "/static-offline-docs/swagger-ui-bundle.js" in docs
    assert httpx.get(server + "/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    spec = httpx.get(server + "/openapi.json").json()
    assert {"/predict", "/", "/health", "/info", "/metrics"} <= set(spec["paths"])
    schema = spec["components"]["schemas"]["PredictRequest"]
    described = json.dumps(schema)
    assert "flat list of texts" in described and "sentence pair" in described
    assert {"inputs": ["see you at 6?", "URGENT! You have won a 1 week FREE membership"]} in schema["examples"]
