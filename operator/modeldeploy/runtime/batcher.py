"""Dynamic batching inside the server.

KServe's batcher sidecar only speaks the v1 protocol, so v2 requests are batched here:
concurrent requests wait up to ``max_queue_delay`` for company (no longer once as many are queued
as were inside during the last batch: nobody else is coming), are concatenated along the batch
axis up to ``max_batch_size`` rows, run as one ONNX Runtime call in a worker thread (never on the
event loop), and the result rows are split back in the order they went in. Each request gets the
slice that came from its own rows; nothing else can reach it. Requests whose per-sample shapes or
dtypes differ are never mixed; they go in a later batch.

The queue is bounded: a request that finds ``max_queue`` others waiting is refused at once
(``OverloadedError``), which keeps latency bounded for the ones admitted and lets a client or a load
balancer go elsewhere. A request whose caller gives up (its deadline) leaves the queue. A batch
that fails is run again one request at a time, so only the requests that fail on their own
fail, each with the reason; none is left waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeldeploy.runtime.errors import BatchFailedError, OverloadedError

Tensors = dict[str, np.ndarray]
RunBatch = Callable[[Tensors], list[np.ndarray]]


@dataclass(eq=False)  # identity: jobs hold arrays, which have no single truth value
class _Job:
    inputs: Tensors
    rows: int
    key: tuple[Any, ...]
    future: asyncio.Future[list[np.ndarray]]
    enqueued: float = field(default_factory=time.monotonic)


def _key(inputs: Tensors) -> tuple[Any, ...]:
    return tuple((name, a.shape[1:], a.dtype.str) for name, a in sorted(inputs.items()))


class DynamicBatcher:
    """Merge concurrent ``infer`` calls into batches for ``run``."""

    def __init__(
        self,
        run: RunBatch,
        max_batch_size: int,
        max_queue_delay: float,
        executor: Executor | None = None,
        observe: Callable[[int, list[float]], None] | None = None,
        max_queue: int = 1 << 30,
        abandon: Callable[[], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max(1, max_batch_size)
        self.max_queue_delay = max(0.0, max_queue_delay)
        self._executor = executor
        self._observe = observe
        self.max_queue = max(1, max_queue)
        self._abandon = abandon
        self._running: list[_Job] | None = None  # the batch in the worker now
        self._queue: deque[_Job] = deque()
        self._inside = 0  # requests queued or running now
        self._peak = 0  # most requests inside at once since the last batch started
        self._free_since = 0.0  # when the last batch ended
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    async def infer(self, inputs: Tensors) -> list[np.ndarray]:
        """The model's outputs for exactly these rows."""
        loop = asyncio.get_running_loop()
        rows = len(next(iter(inputs.values())))
        self.check_room()
        if self._arrived is None:
            self._arrived = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._loop())
        job = _Job(inputs, rows, _key(inputs), loop.create_future())
        self._inside += 1
        self._peak = max(self._peak, self._inside)
        self._queue.append(job)
        self._arrived.set()
        try:
            return await job.future
        finally:
            self._inside -= 1
            # The caller gave up (its deadline): cancelling the caller cancelled the future.
            if job.future.cancelled() or not job.future.done():
                job.future.cancel()
                if job in self._queue:
                    self._queue.remove(job)
                elif self._abandon and self._nobody_waits_on_the_run(job):
                    self._abandon()  # stop the run itself: there is no one to answer

    def check_room(self) -> None:
        """Raise ``OverloadedError`` when the queue is full: callers may ask before they read
        the request, so a refusal costs nothing of the kind."""
        waiting = self.waiting
        if waiting >= self.max_queue:
            raise OverloadedError(
                f"the batch queue holds {waiting} requests, its limit; retry later or elsewhere"
            )

    def _nobody_waits_on_the_run(self, job: _Job) -> bool:
        """``job`` is in the batch running now, and every caller of that batch has gone."""
        running = self._running
        return running is not None and job in running and all(j.future.done() for j in running)

    @property
    def waiting(self) -> int:
        """Requests admitted and not yet running."""
        return len(self._queue)

    def _guarded(self, batch: Tensors) -> list[np.ndarray]:
        try:
            return self._run(batch)
        except Exception as err:
            rows = len(next(iter(batch.values())))
            raise BatchFailedError(f"ONNX Runtime failed on a batch of {rows} rows: {err}") from err

    def _take(self) -> list[_Job]:
        """The oldest job and every later compatible job that still fits, in arrival order."""
        first = self._queue[0]
        taken, rows = [], 0
        for job in list(self._queue):
            if job is first or (job.key == first.key and rows + job.rows <= self.max_batch_size):
                taken.append(job)
                rows += job.rows
        for job in taken:
            self._queue.remove(job)
        return taken

    async def _one_by_one(self, jobs: list[_Job], err: Exception) -> None:
        """After a failed batch, each request runs alone, so one bad request (an index out of
        range, say) fails only itself; every request hears its own answer or reason, and none
        is left waiting."""
        loop = asyncio.get_running_loop()
        if len(jobs) == 1:
            failure = err if isinstance(err, BatchFailedError) else BatchFailedError(str(err))
            if not jobs[0].future.done():
                jobs[0].future.set_exception(failure)
            return
        for job in jobs:
            if job.future.done():
                continue
            try:
                outputs = await loop.run_in_executor(self._executor, self._guarded, job.inputs)
            except Exception as alone:
                if not job.future.done():
                    job.future.set_exception(alone)
            else:
                if not job.future.done():
                    job.future.set_result(outputs)

    def _ready_rows(self, key: tuple[Any, ...]) -> int:
        return sum(j.rows for j in self._queue if j.key == key)

    async def _loop(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            first = self._queue[0]
            # The delay counts from when the model became free, not only from arrival: a request
            # that queued behind a running batch would otherwise go alone the moment it ends,
            # just before the answered clients come back (c=8 ran batches of 1 and 7 in turn).
            deadline = max(first.enqueued, self._free_since) + self.max_queue_delay
            # Wait for company only while more is expected: as many requests as were inside at
            # once during the last batch. Closed-loop clients are all back in the queue a moment
            # after their answers, and holding them for the rest of the delay would only idle
            # the model (8 such clients ran at 0.6x of no batching before this rule).
            while (
                self._peak > 1
                and len(self._queue) < self._peak
                and self._ready_rows(first.key) < self.max_batch_size
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            if not self._queue:  # every waiting caller gave up meanwhile
                continue
            jobs = self._take()
            self._peak = self._inside
            started = time.monotonic()
            if self._observe:
                self._observe(sum(j.rows for j in jobs), [started - j.enqueued for j in jobs])
            self._running = jobs
            try:
                batch = {
                    name: np.concatenate([j.inputs[name] for j in jobs]) for name in jobs[0].inputs
                }
                outputs = await loop.run_in_executor(self._executor, self._guarded, batch)
            except Exception as err:
                await self._one_by_one(jobs, err)
                continue
            finally:
                self._running = None
                self._free_since = time.monotonic()
            offset = 0
            for job in jobs:
                if not job.future.done():  # the caller may have gone away
                    job.future.set_result([o[offset : offset + job.rows] for o in outputs])
                offset += job.rows
