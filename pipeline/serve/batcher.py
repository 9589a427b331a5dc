"""Dynamic batching: concurrent requests share one forward pass, run on one worker thread.

Each text of each request becomes a job on an asyncio queue. One loop takes the first waiting job, then
gathers more until ``max_batch_size`` jobs or ``max_wait_s`` after the first, and hands the batch to a
single worker thread (``classify`` sorts it by length and runs the model), so the event loop keeps
accepting and answering requests while the model runs. While a batch runs, new jobs queue up and form the
next batch, so under load batches fill by themselves.

Waiting only pays when other requests are coming: after a batch of one text (a lone client), the next
batch starts at once instead of waiting ``max_wait_s`` for company that is not there; after a shared batch
(or at start), it waits. So a single client pays no batching delay and concurrent clients still share.

A failing forward pass fails the jobs of that batch only (:class:`BatchFailed`, answered 503); the loop
goes on with the next batch. One thread, because a torch module is not thread-safe and a fast tokenizer
refuses concurrent use; torch itself still uses every core inside that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")


class BatchFailed(Exception):
    """The forward pass of the batch holding this text raised; the message names the error."""


class Overloaded(Exception):
    """More texts are waiting than the queue allows."""


class NotRunning(Exception):
    """The batcher is not started, or is shutting down."""


@dataclass
class _Job:
    text: str
    future: asyncio.Future[np.ndarray]


@dataclass
class BatchStats:
    """What one forward pass did, for metrics."""

    size: int
    seconds: float
    failed: bool


class DynamicBatcher:
    def __init__(
        self,
        classify: Callable[[list[str]], np.ndarray],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[BatchStats], None] = lambda stats: None,
    ) -> None:
        self._classify = classify
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._shared = True  # did the last batch hold more than one text? (assume so until one runs)
        self.in_flight = 0
        """Texts submitted and not answered yet: queued, gathering into a batch, or in the forward pass."""

    # -- lifecycle (the app's lifespan calls these) ------------------------------------------------

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spam-tune-model")
        self._task = asyncio.create_task(self._run(), name="spam-tune-batcher")

    async def stop(self) -> None:
        """Stop after the running batch; jobs still queued fail with :class:`NotRunning`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(NotRunning("the server is shutting down"))
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            self._executor = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # -- use -------------------------------------------------------------------------------------------

    async def submit(self, texts: list[str]) -> np.ndarray:
        """Logits ``[len(texts), num_labels]`` for ``texts``, computed in whatever batches they land in."""
        if not self.running or self._queue is None:
            raise NotRunning("the model worker is not running")
        if self._queue.qsize() + len(texts) > self._max_queue:
            raise Overloaded(f"{self._queue.qsize()} texts are already waiting (limit {self._max_queue})")
        loop = asyncio.get_running_loop()
        jobs = [_Job(text, loop.create_future()) for text in texts]
        for job in jobs:
            self._queue.put_nowait(job)
        self.in_flight += len(jobs)
        try:
            rows = await asyncio.gather(*(job.future for job in jobs))
        finally:
            self.in_flight -= len(jobs)
            for job in jobs:  # the client went away or a sibling failed: drop what has not run yet
                job.future.cancel()
        return np.stack(rows)

    async def run_in_worker(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the model's thread (e.g. the tokenizer, which must not run concurrently)."""
        if self._executor is None:
            raise NotRunning("the model worker is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    # -- the loop --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = [job for job in await self._collect() if not job.future.done()]
            if batch:
                await self._forward(batch)

    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + (self._max_wait_s if self._shared else 0.0)
        while len(batch) < self._max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        self._shared = len(batch) > 1
        return batch

    async def _forward(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            logits = await self.run_in_worker(self._classify, [job.text for job in batch])
        except Exception as err:  # any model failure: answer this batch, keep serving the next ones
            log.exception("forward pass failed for a batch of %d text(s)", len(batch))
            failure = BatchFailed(f"{type(err).__name__}: {' '.join(str(err).split())[:300]}")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(failure)
            self._on_batch(BatchStats(len(batch), time.perf_counter() - started, failed=True))
            return
        for job, row in zip(batch, logits, strict=True):
            if not job.future.done():
                job.future.set_result(row)
        self._on_batch(BatchStats(len(batch), time.perf_counter() - started, failed=False))
