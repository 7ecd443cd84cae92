"""The work queue (``controller/work_queue.py``): each ModelDeployment queued once however many
events arrive, never worked by two workers at once, looked at again when it changed meanwhile,
a bounded number of workers, and looked at again when the last look asked for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import pytest

from modeldeploy.controller.bodies import Key
from modeldeploy.controller.work_queue import WorkQueue
from tests.support.beside import run_beside

A, B = ("ml", "a"), ("ml", "b")


def _run(queue: WorkQueue, until: Callable[[], Awaitable[None]]) -> None:
    run_beside(queue.run, until, 5)


def test_many_events_for_one_deployment_before_a_worker_is_free_cost_one_look() -> None:
    worked: list[Key] = []

    async def work(key: Key) -> None:
        worked.append(key)

    queue = WorkQueue(work, workers=2)
    for _ in range(10):
        queue.add(A)
    queue.add(B)
    assert len(queue) == 2

    async def done() -> None:
        while len(worked) < 2 or len(queue):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # time for a wrong second look to show

    _run(queue, done)
    assert sorted(worked) == [A, B]


def test_a_deployment_changed_while_it_is_worked_is_looked_at_again_never_twice_at_once() -> None:
    looks: list[str] = []
    active: set[Key] = set()

    async def scenario() -> None:
        first_started, let_go = asyncio.Event(), asyncio.Event()

        async def work(key: Key) -> None:
            assert key not in active, "two workers on one key"
            active.add(key)
            looks.append(f"start {len(looks)}")
            if len(looks) == 1:
                first_started.set()
                await let_go.wait()
            active.discard(key)

        queue = WorkQueue(work, workers=4)
        workers = asyncio.create_task(queue.run())
        queue.add(A)
        await first_started.wait()
        queue.add(A)  # changed while the first look runs: not started beside it
        queue.add(A)
        await asyncio.sleep(0.05)
        assert looks == ["start 0"]
        let_go.set()
        while len(looks) < 2 or active:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        workers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await workers

    asyncio.run(asyncio.wait_for(scenario(), 5))
    assert looks == ["start 0", "start 1"]


def test_no_more_deployments_are_worked_at_once_than_there_are_workers() -> None:
    running, most = 0, 0
    finished: list[Key] = []

    async def work(key: Key) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        finished.append(key)

    queue = WorkQueue(work, workers=3)
    for n in range(20):
        queue.add(("ml", str(n)))

    async def done() -> None:
        while len(finished) < 20:
            await asyncio.sleep(0.01)

    _run(queue, done)
    assert most == 3
    assert len(set(finished)) == 20


def test_a_failed_look_is_logged_and_the_worker_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    worked: list[Key] = []

    async def work(key: Key) -> None:
        if key == A:
            raise RuntimeError("a bug")
        worked.append(key)

    queue = WorkQueue(work, workers=1)
    queue.add(A)
    queue.add(B)

    async def done() -> None:
        while not worked:
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR):
        _run(queue, done)
    assert worked == [B]
    assert "reconciling ml/a" in caplog.text
    assert "a bug" in caplog.text


def _looks(
    answers: list[float | Exception | None], after_first: Callable[[WorkQueue], None]
) -> int:
    """How many looks at A there were: each look answers the next of ``answers`` (when to look
    again, or an error); ``after_first`` runs once the first look has answered. Waits until
    every answer is used, then as long again as the longest delay."""
    looks = 0
    queue: WorkQueue

    async def work(key: Key) -> float | None:
        nonlocal looks
        answer = answers[looks]
        looks += 1
        if looks == 1:
            asyncio.get_running_loop().call_soon(after_first, queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    queue = WorkQueue(work, workers=2)
    queue.add(A)
    longest = max((a for a in answers if isinstance(a, float)), default=0.0)

    async def done() -> None:
        while looks < len(answers):
            await asyncio.sleep(0.01)
        await asyncio.sleep(longest + 0.2)  # time for a look that should not be to show

    _run(queue, done)
    return looks


def test_a_look_that_asks_to_be_looked_at_again_is_queued_after_that_delay() -> None:
    assert _looks([0.05, 0.05, None], lambda _: None) == 3


def test_a_newer_answer_replaces_the_look_an_earlier_one_asked_for() -> None:
    # The first look asks for another in 0.5 s; an event queues one at once, which asks for
    # none: the pending one is dropped.
    assert _looks([0.5, None], lambda queue: queue.add(A)) == 2


def test_a_failed_look_leaves_the_look_already_asked_for(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert _looks([0.5, RuntimeError("a bug"), None], lambda queue: queue.add(A)) == 3
