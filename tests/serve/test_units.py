"""Serving pieces without a model: scores, request shapes, options, and the batcher's batching and failures."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.errors import ServeError
from pipeline.serve.batcher import BatchFailed, BatchStats, DynamicBatcher, Overloaded
from pipeline.serve.schemas import PredictRequest
from pipeline.serve.scoring import answers, ranked_labels, softmax
from pipeline.serve.settings import ServeSettings

LABELS = {0: "ham", 1: "spam"}


def test_the_decided_label_comes_first_then_by_score():
    assert ranked_labels(np.array([0.7, 0.3]), 1, LABELS) == [
        {"label": "spam", "score": 0.3},
        {"label": "ham", "score": 0.7},
    ]
    three = ranked_labels(np.array([0.2, 0.5, 0.3]), 0, {0: "a", 1: "b", 2: "c"}, top_k=2)
    assert [e["label"] for e in three] == ["a", "b"]


def test_answers_apply_the_asked_transform():
    logits = np.array([[2.0, -1.0]])
    probs = answers(logits, np.array([0]), LABELS)[0]
    assert probs[0]["score"] == pytest.approx(softmax(logits)[0, 0]) and probs[0]["label"] == "ham"
    raw = answers(logits, np.array([0]), LABELS, transform="none")[0]
    assert [e["score"] for e in raw] == [2.0, -1.0]
    sig = answers(logits, np.array([0]), LABELS, transform="sigmoid")[0]
    assert sig[1]["score"] == pytest.approx(1 / (1 + np.exp(1.0)))
    assert softmax(np.array([[1000.0, 0.0]])).tolist() == [[1.0, 0.0]]  # no overflow


@pytest.mark.parametrize(
    ("inputs", "texts", "nested"),
    [
        ("one", ["one"], False),
        (["a", "b"], ["a", "b"], True),  # a flat list of two is a batch here, not TEI's sentence pair
        ([["a"], ["b"], ["c"]], ["a", "b", "c"], True),
        (["a", ["b"]], ["a", "b"], True),
    ],
)
def test_request_inputs_forms(inputs: object, texts: list[str], nested: bool):
    request = PredictRequest(inputs=inputs)
    assert request.texts() == texts and request.nested_answer() is nested
    assert request.transform() == "softmax" and request.top_k() is None


def test_request_options():
    assert PredictRequest(inputs="a", raw_scores=True).transform() == "none"
    asked = PredictRequest(inputs="a", parameters={"top_k": 1, "function_to_apply": "sigmoid"})
    assert asked.transform() == "sigmoid" and asked.top_k() == 1 and asked.nested_answer()
    with pytest.raises(ValidationError, match="contradicts"):
        PredictRequest(inputs="a", raw_scores=True, parameters={"function_to_apply": "softmax"})
    with pytest.raises(ValidationError, match=r"inputs\[0\] is a list of 3 items"):
        PredictRequest(inputs=[["a", "b", "c"]])


def test_settings_refuse_values_that_cannot_protect_the_server():
    assert ServeSettings().host == "127.0.0.1" and ServeSettings().max_body_bytes < 2_000_000
    assert ServeSettings().max_inputs_per_request < 100_000
    for bad, words in [
        ({"max_wait_ms": -1}, "--max-wait-ms must be 0 or more"),
        ({"port": 70000}, "--port must be between 0 and 65535"),
        ({"max_body_bytes": 0}, "--max-body-bytes must be at least 1"),
    ]:
        with pytest.raises(ServeError, match=words):
            ServeSettings(**bad)


class Recorder:
    """A stand-in model: logits [len(text), 0] per text; records each batch; fails on 'BOOM'."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if "BOOM" in texts:
            raise ValueError("bad batch")
        return np.array([[len(t), 0.0] for t in texts])


async def _run(batcher: DynamicBatcher, groups: list[list[str]]) -> list[object]:
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(g) for g in groups), return_exceptions=True)
    finally:
        await batcher.stop()


def test_batcher_gathers_concurrent_texts_up_to_the_batch_size_on_one_thread():
    model, stats = Recorder(), []
    batcher = DynamicBatcher(model, max_batch_size=4, max_wait_s=1.0, max_queue=100, on_batch=stats.append)
    results = asyncio.run(_run(batcher, [["a"], ["bb", "ccc"], ["dddd"], ["eeeee", "f"]]))
    assert [r[:, 0].tolist() for r in results] == [[1], [2, 3], [4], [5, 1]]  # each request gets its own rows
    assert [len(b) for b in model.batches] == [4, 2]  # the full batch ran at once, the rest after the wait
    assert [s.size for s in stats] == [4, 2] and not any(s.failed for s in stats)
    assert len(model.threads) == 1 and next(iter(model.threads)).startswith("spam-tune-model")


def test_batcher_with_batch_size_one_runs_every_text_alone():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch_size=1, max_wait_s=1.0, max_queue=100)
    asyncio.run(_run(batcher, [["a", "b"], ["c"]]))
    assert model.batches == [["a"], ["b"], ["c"]]


def test_a_failing_batch_fails_its_requests_only_and_the_loop_goes_on():
    model, stats = Recorder(), []
    batcher = DynamicBatcher(model, max_batch_size=2, max_wait_s=1.0, max_queue=100, on_batch=stats.append)
    results = asyncio.run(_run(batcher, [["ok"], ["BOOM"], ["fine"]]))
    assert isinstance(results[0], BatchFailed) and isinstance(results[1], BatchFailed)
    assert "ValueError: bad batch" in str(results[1])
    assert results[2][:, 0].tolist() == [4]
    assert stats == [BatchStats(2, stats[0].seconds, True), BatchStats(1, stats[1].seconds, False)]


def test_batcher_refuses_more_than_the_queue_holds():
    batcher = DynamicBatcher(Recorder(), max_batch_size=2, max_wait_s=0.0, max_queue=3)
    results = asyncio.run(_run(batcher, [["a", "b", "c", "d"]]))
    assert isinstance(results[0], Overloaded)


def test_plan_batches_cuts_where_padding_costs_more_than_a_pass():
    from pipeline.serve.batch_plan import plan_batches

    # Similar lengths stay together; a far longer text gets its own pass; no batch exceeds max_batch.
    assert plan_batches([5, 5, 6, 6, 80], max_batch=8, pass_cost=32) == [(0, 4), (4, 5)]
    assert plan_batches([5, 5, 6, 6, 80], max_batch=8, pass_cost=10_000) == [(0, 5)]
    equal = plan_batches([3] * 10, max_batch=4, pass_cost=1)  # no padding to save: the fewest passes
    assert len(equal) == 3 and all(b - a <= 4 for a, b in equal)
    assert plan_batches([], max_batch=4, pass_cost=32) == []
    cuts = plan_batches(sorted([7, 30, 12, 64, 9, 22, 41, 18] * 4), max_batch=8, pass_cost=32)
    assert cuts[0][0] == 0 and cuts[-1][1] == 32 and all(0 < b - a <= 8 for a, b in cuts)
    assert all(cuts[i][1] == cuts[i + 1][0] for i in range(len(cuts) - 1))
