"""Prometheus metrics of one app, in its own registry (two apps in one process never share counters)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.serve.batcher import BatchStats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(float(size))
        size *= 2
    return (*sizes, float(max_batch_size))


class ServeMetrics:
    def __init__(self, *, max_batch_size: int, queued: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # CPU seconds, resident memory, open fds of the server
        self.requests = Counter(
            "spam_tune_http_requests", "HTTP requests answered", ["method", "path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "spam_tune_http_request_duration_seconds",
            "Time from request to response",
            ["method", "path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "spam_tune_errors", "Error answers by error_type", ["error_type", "status"], registry=self.registry
        )
        self.texts = Counter("spam_tune_texts_classified", "Texts classified", registry=self.registry)
        self.batch_size = Histogram(
            "spam_tune_batch_size",
            "Texts per forward pass",
            buckets=_batch_buckets(max_batch_size),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "spam_tune_batch_duration_seconds",
            "Time of one forward pass (tokenize, sort, model)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.failed_batches = Counter("spam_tune_batches_failed", "Forward passes that raised", registry=self.registry)
        queue = Gauge("spam_tune_queue_texts", "Texts waiting for the model", registry=self.registry)
        queue.set_function(lambda: float(queued()))
        flying = Gauge("spam_tune_texts_in_flight", "Texts submitted and not answered yet", registry=self.registry)
        flying.set_function(lambda: float(in_flight()))

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.batch_seconds.observe(stats.seconds)
        if stats.failed:
            self.failed_batches.inc()
        else:
            self.texts.inc(stats.size)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts every HTTP answer and its latency by method, route path (unknown paths as ``other``) and status."""

    def __init__(self, app: ASGIApp, *, metrics: ServeMetrics, paths: Callable[[], set[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}  # if the app raises before answering, the server answers 500

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            path = scope["path"] if scope["path"] in self.paths() else "other"
            self.metrics.requests.labels(scope["method"], path, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], path).observe(time.perf_counter() - started)
