"""The runtime's pure parts: cgroup CPU limits, provider choice, batching, NMS, top-k."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modeldeploy.runtime.batcher import DynamicBatcher
from modeldeploy.runtime.errors import BatchFailedError, OverloadedError
from modeldeploy.runtime.hardware import cpu_limit, execution_providers
from modeldeploy.runtime.postprocessing import nms, top_k


def test_cpu_limit_from_cgroup_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cpu_limit(v2) == min(2, cpu_limit(tmp_path / "none"))  # 1.5 CPUs round up to 2
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpu_limit(v2) == cpu_limit(tmp_path / "none")  # no quota: the visible cores
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_limit(tmp_path / "v1") == 1


def test_execution_providers() -> None:
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers(everything, gpu=True) == everything
    assert execution_providers(everything, gpu=False) == ["CPUExecutionProvider"]
    assert execution_providers(["CPUExecutionProvider"], gpu=True) == ["CPUExecutionProvider"]
    assert execution_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], gpu=True) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def _run_batched(
    jobs: list[dict[str, np.ndarray]], max_batch: int, delay: float, fail: bool = False
):  # type: ignore[no-untyped-def]
    calls: list[int] = []
    lock = threading.Lock()

    def run(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        with lock:
            calls.append(len(batch["x"]))
        if fail and (batch["x"] < 0).any():
            raise RuntimeError("boom")
        return [batch["x"] * 2, batch["x"].sum(axis=tuple(range(1, batch["x"].ndim)))]

    async def main() -> list[object]:
        batcher = DynamicBatcher(run, max_batch, delay)
        return await asyncio.gather(*(batcher.infer(j) for j in jobs), return_exceptions=True)

    return asyncio.run(main()), calls


def test_batcher_merges_splits_and_never_mixes_rows() -> None:
    rng = np.random.default_rng(0)
    jobs = [{"x": rng.standard_normal((1 + i % 3, 4)).astype(np.float32)} for i in range(40)]
    results, calls = _run_batched(jobs, max_batch=8, delay=0.05)
    for job, (doubled, sums) in zip(jobs, results, strict=True):  # type: ignore[misc]
        np.testing.assert_array_equal(doubled, job["x"] * 2)
        np.testing.assert_allclose(sums, job["x"].sum(axis=1), rtol=1e-6)
    assert sum(calls) == sum(len(j["x"]) for j in jobs)
    assert max(calls) <= 8
    assert len(calls) < len(jobs)


def test_batcher_keeps_different_shapes_apart() -> None:
    jobs = [{"x": np.ones((1, 4), np.float32)}, {"x": np.ones((1, 5), np.float32)}] * 5
    results, calls = _run_batched(jobs, max_batch=16, delay=0.05)
    assert sorted(calls) == [5, 5]
    assert all(r[0].shape == j["x"].shape for r, j in zip(results, jobs, strict=True))  # type: ignore[index]


def test_a_request_that_fails_its_batch_fails_alone_and_its_neighbours_are_answered() -> None:
    good = {"x": np.ones((1, 2), np.float32)}
    bad = {"x": -np.ones((1, 2), np.float32)}  # the model fails on negative values
    results, calls = _run_batched([good, bad, good], max_batch=8, delay=0.05, fail=True)
    assert calls == [3, 1, 1, 1]  # the batch, then each request alone
    assert isinstance(results[1], BatchFailedError)
    assert str(results[1]) == "ONNX Runtime failed on a batch of 1 rows: boom"
    for answer in (results[0], results[2]):
        np.testing.assert_array_equal(answer[0], good["x"] * 2)  # type: ignore[index]


def test_every_request_of_a_failing_batch_hears_the_reason() -> None:
    bad = {"x": -np.ones((1, 2), np.float32)}
    results, _ = _run_batched([bad] * 3, max_batch=8, delay=0.05, fail=True)
    assert all(
        isinstance(r, BatchFailedError)
        and str(r) == "ONNX Runtime failed on a batch of 1 rows: boom"
        for r in results
    )


def test_batching_off_runs_each_request_alone() -> None:
    jobs = [{"x": np.ones((2, 2), np.float32)}] * 4
    _, calls = _run_batched(jobs, max_batch=1, delay=0.05)
    assert calls == [2, 2, 2, 2]


def test_top_k_labels_and_scores() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float32)
    labels, best = top_k(scores, 2, ["cat", "dog", "eel"])
    assert labels.tolist() == [[b"dog", b"eel"], [b"cat", b"eel"]]
    np.testing.assert_allclose(best, [[0.7, 0.2], [0.5, 0.3]])
    assert top_k(scores, 5, None)[0].shape == (2, 3)


def test_nms_suppresses_overlaps_within_a_class_only() -> None:
    boxes = np.array(
        [
            [
                [0, 0, 10, 10, 0.9, 0],
                [1, 1, 10, 10, 0.8, 0],  # IoU 0.81 with the first, same class: dropped
                [1, 1, 10, 10, 0.7, 1],  # same place, other class: kept
                [20, 20, 30, 30, 0.6, 0],  # elsewhere: kept
                [40, 40, 50, 50, 0.1, 0],  # under the score threshold: dropped
            ]
        ],
        dtype=np.float32,
    )
    kept, counts = nms(boxes, iou_threshold=0.5, score_threshold=0.25, max_detections=10)
    assert counts.tolist() == [3]
    assert kept[0, :3, 4].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert (kept[0, 3:] == -1).all()
    _, limited = nms(boxes, 0.5, 0.25, max_detections=2)
    assert limited.tolist() == [2]


@pytest.mark.timeout(20)
def test_a_lone_request_does_not_sit_out_the_queue_delay() -> None:
    calls: list[int] = []

    def run(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(len(batch["x"]))
        return [batch["x"]]

    async def main() -> None:
        batcher = DynamicBatcher(run, max_batch_size=8, max_queue_delay=3600.0)
        for _ in range(3):  # one at a time, as a single client would send them
            await batcher.infer({"x": np.ones((1, 2), np.float32)})

    asyncio.run(main())  # with the hour-long delay honoured, this would never finish
    assert calls == [1, 1, 1]


@pytest.mark.timeout(20)
def test_closed_loop_clients_are_batched_without_sitting_out_the_queue_delay() -> None:
    calls: list[int] = []

    def run(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(len(batch["x"]))
        return [batch["x"]]

    async def client(batcher: DynamicBatcher) -> None:
        for _ in range(6):  # each sends its next request as soon as the last one is answered
            await batcher.infer({"x": np.ones((1, 2), np.float32)})

    async def main() -> None:
        batcher = DynamicBatcher(run, max_batch_size=32, max_queue_delay=3600.0)
        await asyncio.gather(*(client(batcher) for _ in range(4)))

    asyncio.run(main())  # waiting for 32 rows that four clients never send would take hours
    assert calls == [4] * 6


def _blocking_batcher(
    gate: threading.Event, calls: list[float], abandoned: list[bool]
) -> DynamicBatcher:
    """Runs ``x[0, 0]`` batches one at a time; the run with ``x == 0`` blocks until ``gate``
    is set or the batcher abandons it."""

    def run(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(float(batch["x"][0, 0]))
        if batch["x"][0, 0] == 0:
            gate.wait(10)
        return [batch["x"]]

    def abandon() -> None:
        abandoned.append(True)
        gate.set()

    return DynamicBatcher(
        run, 8, 0.0, ThreadPoolExecutor(max_workers=1), max_queue=4, abandon=abandon
    )


async def _until(condition: Any) -> None:
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("never happened")


def test_a_request_given_up_on_while_it_waits_leaves_the_queue_and_never_runs() -> None:
    gate, calls, abandoned = threading.Event(), [], []

    async def main() -> None:
        batcher = _blocking_batcher(gate, calls, abandoned)
        first = asyncio.ensure_future(batcher.infer({"x": np.zeros((1, 1), np.float32)}))
        await _until(lambda: calls == [0.0])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.infer({"x": np.ones((1, 1), np.float32)}), 0.05)
        assert batcher.waiting == 0
        gate.set()
        await first
        await batcher.infer({"x": np.full((1, 1), 2.0, np.float32)})

    asyncio.run(main())
    assert calls == [0.0, 2.0]  # the request given up on (1.0) never ran
    assert abandoned == []  # the running batch still had its caller


def test_a_run_whose_every_caller_gave_up_is_abandoned() -> None:
    gate, calls, abandoned = threading.Event(), [], []

    async def main() -> None:
        batcher = _blocking_batcher(gate, calls, abandoned)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.infer({"x": np.zeros((1, 1), np.float32)}), 0.05)
        await batcher.infer({"x": np.full((1, 1), 3.0, np.float32)})

    asyncio.run(main())
    assert abandoned == [True]
    assert calls == [0.0, 3.0]


def test_a_full_queue_refuses_at_once_naming_its_bound() -> None:
    gate, calls, abandoned = threading.Event(), [], []

    async def main() -> None:
        batcher = _blocking_batcher(gate, calls, abandoned)
        first = asyncio.ensure_future(batcher.infer({"x": np.zeros((1, 1), np.float32)}))
        await _until(lambda: calls == [0.0])
        waiting = [
            asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), 5.0, np.float32)}))
            for _ in range(4)
        ]
        await _until(lambda: batcher.waiting == 4)
        with pytest.raises(OverloadedError, match="the batch queue holds 4 requests, its limit"):
            await batcher.infer({"x": np.ones((1, 1), np.float32)})
        gate.set()
        await asyncio.gather(first, *waiting)

    asyncio.run(main())
    assert calls == [0.0, 5.0]  # the four waiting went as one batch
