"""The runtime under pressure, as a real process: oversized bodies, decompression bombs, a full
queue, deadlines and a failing batch each get a fast, specific answer; nothing hangs, and the
server stays live and ready. ``graphs.slow`` makes queueing and failures happen on purpose."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from modeldeploy.runtime.errors import Outcome
from tests.runtime.server import RuntimeProcess, running
from tests.runtime.test_runtime import metrics, value

ITERATIONS_PER_SECOND = 300_000
"""Loop iterations of ``graphs.slow`` per second, at the low end of this machine's: a request
meant to outlast another check is sized with it, never a test's outcome."""


def post(
    server: RuntimeProcess, model: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"http://{server.http}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def slow_request(seconds: float, index: int = 0) -> dict[str, Any]:
    """One row whose ``y`` takes about ``seconds`` to compute; ``z`` looks up ``index``."""
    return {
        "inputs": [
            {
                "name": "x",
                "shape": [1, 1],
                "datatype": "FP32",
                "data": [float(int(seconds * ITERATIONS_PER_SECOND))],
            },
            {"name": "i", "shape": [1, 1], "datatype": "INT64", "data": [index]},
        ]
    }


def outcome(server: RuntimeProcess, model: str, name: str) -> float:
    return value(metrics(server), "modeldeploy_requests_total", model_name=model, outcome=name)


NONE = {o.value: 0.0 for o in Outcome}


def outcomes(server: RuntimeProcess, model: str) -> dict[str, float]:
    """Every outcome's count: a test states all of them, so a miscount anywhere shows."""
    found = metrics(server)
    return {
        o.value: value(found, "modeldeploy_requests_total", model_name=model, outcome=o.value)
        for o in Outcome
    }


def wait_for(condition: Callable[[], bool], what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def in_background(call: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``call`` in a thread; the returned function joins it and gives its result."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()

    def join() -> Any:
        thread.join(120)
        assert result, "the request never got an answer"
        return result[0]

    return join


def raw_http(
    server: RuntimeProcess, head: str, body_parts: list[bytes]
) -> tuple[int, dict[str, Any]]:
    """Send a request head and some body bytes on a plain socket, then read the answer."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as conn:
        conn.sendall(head.encode())
        for part in body_parts:
            conn.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def grpc_slow(server: RuntimeProcess, x: float, index: int) -> Any:
    """``graphs.slow`` over gRPC with one row: ``x`` and the table ``index``."""
    client = grpcclient.InferenceServerClient(server.grpc)
    inputs = [
        grpcclient.InferInput("x", [1, 1], "FP32"),
        grpcclient.InferInput("i", [1, 1], "INT64"),
    ]
    inputs[0].set_data_from_numpy(np.full((1, 1), x, np.float32))
    inputs[1].set_data_from_numpy(np.full((1, 1), index, np.int64))
    return client.infer("slow", inputs)


def wait_for_batches(server: RuntimeProcess, count: int) -> None:
    """Until ``count`` batches have started: the batch size is observed as a batch starts."""
    wait_for(
        lambda: value(metrics(server), "modeldeploy_batch_rows_count", model_name="slow") == count,
        f"{count} batches started",
    )


def test_a_body_over_the_cap_is_refused_with_413_before_it_is_read_whole(
    digits_artifact: Path, tmp_path: Path
) -> None:
    with running(digits_artifact, tmp_path, "--max-body-kb", "64") as server:
        # Content-Length says 100 MiB; 1 KiB of it is ever sent.
        head = (
            "POST /v2/models/digits/infer HTTP/1.1\r\nHost: runtime\r\n"
            "Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        )
        status, body = raw_http(server, head, [b"{" + b" " * 1023])
        assert status == 413
        assert body["error"] == "the body is 104857600 bytes; the limit is 65536 bytes"
        # Chunked, with no length up front: refused once 64 KiB have streamed in, though the
        # last chunk never comes.
        head = (
            "POST /v2/models/digits/infer HTTP/1.1\r\nHost: runtime\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunks = [b"2000\r\n" + b" " * 0x2000 + b"\r\n"] * 9  # 72 KiB
        status, body = raw_http(server, head, chunks)
        assert status == 413
        assert body["error"] == "the body is over 65536 bytes, the limit"
        # The client's fault, counted as such; the server is unharmed.
        assert outcome(server, "digits", "invalid") == 2
        assert outcome(server, "digits", "error") == 0
        good = {
            "inputs": [
                {"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [1.0] * 64}
            ]
        }
        assert post(server, "digits", good)[0] == 200


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` grey pixels, with a few bytes of image
    data: decoding it would fail on the truncated data (or, whole, take width x height bytes);
    only a check of the header refuses it with the pixel count."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (width + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def bytes_request(blobs: list[bytes]) -> dict[str, Any]:
    import base64

    return {
        "inputs": [
            {
                "name": "image",
                "shape": [len(blobs)],
                "datatype": "BYTES",
                "data": [base64.b64encode(b).decode() for b in blobs],
            }
        ]
    }


def test_a_decompression_bomb_and_formats_other_than_png_and_jpeg_get_400_without_a_decode(
    image_artifact: Path, tmp_path: Path
) -> None:
    from PIL import Image

    with running(image_artifact, tmp_path, "--max-image-pixels", "1000000") as server:
        status, _, body = post(server, "digits-images", bytes_request([bomb(20_000, 20_000)]))
        assert status == 400
        assert body["error"] == (
            "input 'image': element 0 is a 20000x20000 image (400000000 pixels); "
            "the limit is 1000000 pixels"
        )
        bmp = io.BytesIO()
        Image.new("L", (8, 8)).save(bmp, format="BMP")
        status, _, body = post(server, "digits-images", bytes_request([bmp.getvalue()]))
        assert status == 400
        assert body["error"].startswith("input 'image': element 0 is not a JPEG or PNG image")
        assert outcome(server, "digits-images", "invalid") == 2
        assert outcome(server, "digits-images", "error") == 0


def large_png(size: int) -> bytes:
    from PIL import Image

    gradient = np.tile(np.arange(size, dtype=np.uint32) * 255 // size, (size, 1)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gradient, mode="L").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


PROBE_TIMEOUT = 1.0
"""The kubelet's default timeoutSeconds for a probe: a liveness check slower than this counts as
a failure, and enough of them restart the pod."""


def test_liveness_answers_within_the_probe_timeout_while_large_images_decode(
    image_artifact: Path, tmp_path: Path
) -> None:
    blobs = [large_png(4000)] * 64  # 16 Mpixel each, under the default cap: seconds to decode
    with running(image_artifact, tmp_path) as server:
        done = threading.Event()
        join = in_background(
            lambda: (post(server, "digits-images", bytes_request(blobs)), done.set())
        )
        checks = 0
        while not done.is_set():
            url = f"http://{server.http}/v2/health/live"
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as answer:
                assert answer.status == 200
            checks += 1
        (status, _, body), _ = join()
        assert status == 200, body
        assert [o["name"] for o in body["outputs"]] == ["output", "labels", "scores"]
        assert checks >= 10, checks


def test_a_full_queue_refuses_with_503_over_rest_and_resource_exhausted_over_grpc(
    slow_artifact: Path, tmp_path: Path
) -> None:
    # The manifest allows 2 waiting requests and 1.5 s; the flag gives these 60 s instead.
    with running(slow_artifact, tmp_path, "--request-timeout-ms", "60000") as server:
        running_one = in_background(lambda: post(server, "slow", slow_request(10.0, index=1)))
        wait_for_batches(server, 1)
        waiting = [
            in_background(lambda: post(server, "slow", slow_request(0, index=2))) for _ in range(2)
        ]
        wait_for(
            lambda: value(metrics(server), "modeldeploy_queued_requests", model_name="slow") == 2,
            "two waiting",
        )

        status, headers, body = post(server, "slow", slow_request(0))
        assert status == 503
        assert (
            body["error"] == "the batch queue holds 2 requests, its limit; retry later or elsewhere"
        )
        assert headers["retry-after"] == "1"
        with pytest.raises(InferenceServerException) as refused:
            grpc_slow(server, 0.0, 0)
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert (
            refused.value.message()
            == "the batch queue holds 2 requests, its limit; retry later or elsewhere"
        )
        assert server.get("/v2/health/ready")[0] == 200

        # Everyone admitted is answered, correctly.
        status, _, body = running_one()
        assert status == 200, body
        outputs = {o["name"]: o["data"] for o in body["outputs"]}
        assert outputs["y"] == [2.0 * int(10.0 * ITERATIONS_PER_SECOND)]
        assert outputs["z"] == [1.5]
        for join in waiting:
            status, _, body = join()
            assert status == 200, body
            assert {o["name"]: o["data"] for o in body["outputs"]}["z"] == [2.5]
        assert outcomes(server, "slow") == {**NONE, "overloaded": 2, "success": 3}


def test_a_request_past_its_deadline_gets_504_and_its_abandoned_run_is_stopped(
    slow_artifact: Path, tmp_path: Path
) -> None:
    endless = slow_request(1000.0)  # far longer than any deadline here, were it run to the end
    with running(slow_artifact, tmp_path) as server:  # the manifest's deadline: 1.5 s
        status, _, body = post(server, "slow", endless)
        assert status == 504
        assert body["error"] == "not answered within the request deadline of 1.5s"
        # Nobody waits for that run any more, so it was stopped: the next request is answered
        # rather than queued behind it until its own deadline.
        status, _, body = post(server, "slow", slow_request(0, index=4))
        assert status == 200, body
        assert {o["name"]: o["data"] for o in body["outputs"]}["z"] == [4.5]
        # gRPC: DEADLINE_EXCEEDED with the same words.
        with pytest.raises(InferenceServerException) as late:
            grpc_slow(server, endless["inputs"][0]["data"][0], 0)
        assert late.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        assert late.value.message() == "not answered within the request deadline of 1.5s"
        assert post(server, "slow", slow_request(0))[0] == 200
        assert outcomes(server, "slow") == {**NONE, "timeout": 2, "success": 2}


def test_a_request_that_fails_in_onnx_runtime_gets_500_with_the_reason_and_fails_alone(
    slow_artifact: Path, tmp_path: Path
) -> None:
    flags = ("--request-timeout-ms", "60000", "--max-queue-size", "8")
    with running(slow_artifact, tmp_path, *flags) as server:
        occupying = in_background(lambda: post(server, "slow", slow_request(8.0)))
        wait_for_batches(server, 1)
        bad = in_background(lambda: post(server, "slow", slow_request(0, index=99)))
        good = [
            in_background(lambda: post(server, "slow", slow_request(0, index=3))) for _ in range(2)
        ]
        wait_for(
            lambda: value(metrics(server), "modeldeploy_queued_requests", model_name="slow") == 3,
            "three waiting",
        )
        assert occupying()[0] == 200
        status, _, body = bad()
        assert status == 500
        assert body["error"].startswith("ONNX Runtime failed on a batch of 1 rows: ")
        assert "indices element out of data bounds, idx=99" in body["error"]
        for join in good:  # they were in the failed batch, and are answered all the same
            status, _, body = join()
            assert status == 200, body
            assert {o["name"]: o["data"] for o in body["outputs"]}["z"] == [3.5]
        assert (
            value(metrics(server), "modeldeploy_batch_rows_count", model_name="slow") == 2
        )  # 1, 3 rows
        assert outcomes(server, "slow") == {**NONE, "error": 1, "success": 3}
        # Over gRPC: INTERNAL, with the same reason.
        with pytest.raises(InferenceServerException) as failed:
            grpc_slow(server, 0.0, 99)
        assert failed.value.status() == "StatusCode.INTERNAL"
        assert "idx=99" in failed.value.message()
