"""The runtime as a real process, driven by the real tritonclient over HTTP (JSON and binary)
and gRPC."""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from modeldeploy.api.metric_names import (
    OUR_PREFIX,
    RUNTIME_FAMILIES,
    RUNTIME_METRICS,
    render_catalogue,
)
from tests.runtime.server import RuntimeProcess, running


def reference(artifact: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        str(artifact / "digits" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"image": x})[0]


def pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 16, size=(n, 1, 8, 8)).astype(np.float32)


def http_infer(
    server: RuntimeProcess, x: np.ndarray, binary: bool, outputs: tuple[str, ...] = ("output",)
) -> Any:
    client = httpclient.InferenceServerClient(server.http)
    item = httpclient.InferInput("image", list(x.shape), "FP32")
    item.set_data_from_numpy(x, binary_data=binary)
    requested = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs]
    return client.infer("digits", [item], outputs=requested)


def metrics(server: RuntimeProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, body = server.get("/metrics")
    assert status == 200
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    for key, v in found.get(name, {}).items():
        if all(dict(key).get(k) == want for k, want in labels.items()):
            return float(v)
    raise KeyError(f"{name}{labels} not in metrics")


def test_health_metadata_and_triton_config(runtime: RuntimeProcess) -> None:
    http = httpclient.InferenceServerClient(runtime.http)
    grpc = grpcclient.InferenceServerClient(runtime.grpc)
    assert http.is_server_live()
    assert http.is_server_ready()
    assert http.is_model_ready("digits")
    assert grpc.is_server_live()
    assert grpc.is_model_ready("digits")
    meta = http.get_model_metadata("digits")
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    gmeta = grpc.get_model_metadata("digits")
    assert [(i.name, i.datatype, list(i.shape)) for i in gmeta.inputs] == [
        ("image", "FP32", [-1, 1, 8, 8])
    ]
    config = http.get_model_config("digits")
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 32
    assert config["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}]
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 5000}


@pytest.mark.parametrize("protocol", ["http-json", "http-binary", "grpc"])
def test_inference_matches_onnx_runtime(
    runtime: RuntimeProcess, digits_artifact: Path, protocol: str
) -> None:
    x = pixels(5, seed=7)
    if protocol == "grpc":
        client = grpcclient.InferenceServerClient(runtime.grpc)
        item = grpcclient.InferInput("image", list(x.shape), "FP32")
        item.set_data_from_numpy(x)
        result = client.infer("digits", [item])
    else:
        result = http_infer(
            runtime, x, binary=protocol == "http-binary", outputs=("output", "labels", "scores")
        )
    expected = reference(digits_artifact, x)
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-5, atol=1e-6)
    labels = result.as_numpy("labels")
    assert labels.shape == (5, 3)
    best = [str(int(i)) for i in expected.argmax(axis=1)]
    assert [lab.decode() if isinstance(lab, bytes) else str(lab) for lab in labels[:, 0]] == best
    np.testing.assert_allclose(result.as_numpy("scores")[:, 0], expected.max(axis=1), rtol=1e-5)


def test_golden_samples_replay_through_the_server(
    runtime: RuntimeProcess, digits_artifact: Path
) -> None:
    golden = np.load(digits_artifact / "digits" / "golden.npz")
    result = http_infer(runtime, golden["input:image"], binary=True)
    np.testing.assert_allclose(
        result.as_numpy("output"), golden["output:output"], rtol=1e-5, atol=1e-6
    )


def test_concurrent_requests_each_get_their_own_answer(
    runtime: RuntimeProcess, digits_artifact: Path
) -> None:
    before = metrics(runtime)
    rows = [1 + (i % 3) for i in range(120)]  # 1, 2 or 3 samples per request
    inputs = [pixels(n, seed=1000 + i) for i, n in enumerate(rows)]

    def one(i: int) -> np.ndarray:
        if i % 2:
            client = grpcclient.InferenceServerClient(runtime.grpc)
            item = grpcclient.InferInput("image", list(inputs[i].shape), "FP32")
            item.set_data_from_numpy(inputs[i])
            return client.infer("digits", [item]).as_numpy("output")
        return http_infer(runtime, inputs[i], binary=True).as_numpy("output")

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(one, range(len(inputs))))
    everything = reference(digits_artifact, np.concatenate(inputs))
    offset = 0
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(
            answer,
            everything[offset : offset + rows[i]],
            rtol=1e-5,
            atol=1e-6,
            err_msg=f"request {i}",
        )
        offset += rows[i]
    after = metrics(runtime)
    calls = value(after, "modeldeploy_batch_rows_count", model_name="digits") - value(
        before, "modeldeploy_batch_rows_count", model_name="digits"
    )
    total = value(after, "modeldeploy_batch_rows_sum", model_name="digits") - value(
        before, "modeldeploy_batch_rows_sum", model_name="digits"
    )
    assert total == sum(rows)
    assert calls < len(inputs), "no two requests were ever batched together"


BAD_REQUESTS = [
    (
        "unknown-input",
        {
            "inputs": [
                {"name": "pixels", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
            ]
        },
        "unknown input 'pixels'; the model takes 'image'",
    ),
    (
        "wrong-datatype",
        {
            "inputs": [
                {"name": "image", "shape": [1, 1, 8, 8], "datatype": "INT64", "data": [0] * 64}
            ]
        },
        "input 'image' has datatype INT64; the model takes FP32",
    ),
    (
        "wrong-rank",
        {"inputs": [{"name": "image", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]},
        "input 'image' has rank 2 (shape [1, 64]); the model takes rank 4 [-1, 1, 8, 8]",
    ),
    (
        "wrong-shape",
        {
            "inputs": [
                {"name": "image", "shape": [1, 1, 8, 7], "datatype": "FP32", "data": [0.0] * 56}
            ]
        },
        "input 'image' has shape [1, 1, 8, 7]; dimension 3 must be 8",
    ),
    (
        "length-mismatch",
        {
            "inputs": [
                {"name": "image", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
            ]
        },
        "input 'image': 64 values do not fill shape [2, 1, 8, 8] (128 values)",
    ),
    (
        "negative-dimension",
        {"inputs": [{"name": "image", "shape": [-2, 1, 8, 8], "datatype": "FP32", "data": []}]},
        "input 'image' has a negative dimension in shape [-2, 1, 8, 8]",
    ),
    (
        "non-numeric",
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, 1, 8, 8],
                    "datatype": "FP32",
                    "data": ["x"] + [0.0] * 63,
                }
            ]
        },
        "input 'image' holds a non-numeric value 'x'; datatype FP32",
    ),
    (
        "batch-over-limit",
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [33, 1, 8, 8],
                    "datatype": "FP32",
                    "data": [0.0] * 33 * 64,
                }
            ]
        },
        "input 'image' has batch 33; the limit is 32",
    ),
    ("missing-input", {"inputs": []}, "missing input 'image'"),
    ("not-a-v2-request", {"instances": [[1, 2, 3]]}, "malformed request: inputs: Field required"),
]


@pytest.mark.parametrize(
    ("case", "body", "message"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_request_gets_400_naming_the_problem(
    runtime: RuntimeProcess, digits_artifact: Path, case: str, body: dict[str, Any], message: str
) -> None:
    request = urllib.request.Request(
        f"http://{runtime.http}/v2/models/digits/infer", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 400
    assert json.loads(err.value.read())["error"] == message
    # The server is unharmed: the next good request is answered correctly.
    x = pixels(2, seed=3)
    np.testing.assert_allclose(
        http_infer(runtime, x, binary=True).as_numpy("output"),
        reference(digits_artifact, x),
        rtol=1e-5,
        atol=1e-6,
    )


def test_binary_and_grpc_refusals(runtime: RuntimeProcess) -> None:
    # Binary data shorter than the declared shape.
    client = httpclient.InferenceServerClient(runtime.http)
    item = httpclient.InferInput("image", [1, 1, 8, 8], "FP32")
    item.set_data_from_numpy(pixels(1, seed=1), binary_data=True)
    item.set_shape([2, 1, 8, 8])  # declare two samples, send one
    with pytest.raises(
        InferenceServerException,
        match=r"256 bytes of binary data do not fill shape \[2, 1, 8, 8\] \(512 bytes\)",
    ):
        client.infer("digits", [item])
    # gRPC: INVALID_ARGUMENT with the same words; unknown model: NOT_FOUND.
    grpc = grpcclient.InferenceServerClient(runtime.grpc)
    bad = grpcclient.InferInput("image", [1, 1, 8, 9], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 1, 8, 9), np.float32))
    with pytest.raises(InferenceServerException) as err:
        grpc.infer("digits", [bad])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'image' has shape [1, 1, 8, 9]; dimension 3 must be 8" in err.value.message()
    good = grpcclient.InferInput("image", [1, 1, 8, 8], "FP32")
    good.set_data_from_numpy(pixels(1, seed=2))
    with pytest.raises(InferenceServerException) as missing:
        grpc.infer("no-such-model", [good])
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    http_good = httpclient.InferInput("image", [1, 1, 8, 8], "FP32")
    http_good.set_data_from_numpy(pixels(1, seed=2))
    with pytest.raises(InferenceServerException, match="404"):
        client.infer("no-such-model", [http_good])
    assert client.is_server_live()
    assert client.is_model_ready("digits")


def test_payload_limit(digits_artifact: Path, tmp_path: Path) -> None:
    with running(digits_artifact, tmp_path, "--max-request-kb", "1") as server:
        with pytest.raises(
            InferenceServerException, match="input 'image' is 1280 bytes; the limit is 1024 bytes"
        ):
            http_infer(server, pixels(5, seed=1), binary=True)
        assert http_infer(server, pixels(4, seed=1), binary=True).as_numpy("output").shape == (
            4,
            10,
        )


def test_failed_self_test_keeps_the_model_unready(broken_artifact: Path, tmp_path: Path) -> None:
    with running(broken_artifact, tmp_path) as server:
        status, body = server.get("/v2/models/digits/ready")
        assert status == 503
        reason = json.loads(body)["reason"]
        assert reason.startswith(
            "self-test failed on 4 golden samples with CPUExecutionProvider: output 'output': max |Δ| 0.05"
        )
        assert server.get("/v2/health/ready")[0] != 200
        client = httpclient.InferenceServerClient(server.http)
        assert not client.is_model_ready("digits")
        with pytest.raises(InferenceServerException):
            http_infer(server, pixels(1, seed=1), binary=True)
        found = metrics(server)
        assert value(found, "modeldeploy_self_test_passed", model_name="digits") == 0
        assert value(
            found, "modeldeploy_self_test_max_abs_diff", model_name="digits"
        ) == pytest.approx(0.05, abs=1e-3)
        assert "self-test failed" in server.log_text()


def test_labels_that_do_not_fit_the_classes_fail_the_self_test(
    digits_artifact: Path, tmp_path: Path
) -> None:
    # Served, every request would end in top-k with an IndexError: not ready is the answer.
    copy = tmp_path / "three-labels"
    shutil.copytree(digits_artifact, copy)
    (copy / "digits" / "labels.txt").write_text("zero\none\ntwo\n")
    with running(copy, tmp_path) as server:
        status, body = server.get("/v2/models/digits/ready")
        assert status == 503
        assert "post-processing failed on the golden outputs" in json.loads(body)["reason"]


def png(image: np.ndarray, scale: int = 4) -> bytes:
    from PIL import Image

    big = np.kron(image, np.ones((scale, scale))).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_in_top_k_labels_out(
    image_artifact: Path, digits_model_file: tuple[Path, Any], tmp_path: Path
) -> None:
    x_test, y_test = digits_model_file[1]
    images = [png(x_test[i, 0] * 255 / 16) for i in range(40)]
    with running(image_artifact, tmp_path) as server:
        client = httpclient.InferenceServerClient(server.http)
        item = httpclient.InferInput("image", [len(images)], "BYTES")
        item.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
        result = client.infer(
            "digits-images",
            [item],
            outputs=[
                httpclient.InferRequestedOutput("labels"),
                httpclient.InferRequestedOutput("scores"),
            ],
        )
        labels = result.as_numpy("labels")
        assert labels.shape == (40, 2)
        correct = np.mean(
            [int(lab.decode()) == y for lab, y in zip(labels[:, 0], y_test[:40], strict=True)]
        )
        assert correct >= 0.9, f"only {correct:.0%} of the images were read right"
        scores = result.as_numpy("scores")
        assert ((scores[:, 0] >= scores[:, 1]) & (scores[:, 0] <= 1.0)).all()
        # gRPC takes the same bytes.
        grpc = grpcclient.InferenceServerClient(server.grpc)
        gitem = grpcclient.InferInput("image", [1], "BYTES")
        gitem.set_data_from_numpy(np.array(images[:1], dtype=np.object_))
        assert grpc.infer("digits-images", [gitem]).as_numpy("labels")[0, 0] == labels[0, 0]
        # Bytes that are not an image are refused, naming the element.
        junk = httpclient.InferInput("image", [2], "BYTES")
        junk.set_data_from_numpy(
            np.array([images[0], b"not an image"], dtype=np.object_), binary_data=True
        )
        with pytest.raises(
            InferenceServerException, match=r"input 'image': element 1 is not a JPEG or PNG image"
        ):
            client.infer("digits-images", [junk])


def test_metrics_scraped_and_parsed(runtime: RuntimeProcess) -> None:
    http_infer(runtime, pixels(3, seed=11), binary=True)
    item = httpclient.InferInput("image", [1, 1, 8, 8], "INT64")
    item.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.int64))
    with pytest.raises(InferenceServerException):
        httpclient.InferenceServerClient(runtime.http).infer("digits", [item])
    found = metrics(runtime)
    assert value(found, "modeldeploy_requests_total", model_name="digits", outcome="success") >= 1
    assert value(found, "modeldeploy_requests_total", model_name="digits", outcome="invalid") >= 1
    assert value(found, "modeldeploy_request_latency_seconds_count", model_name="digits") >= 1
    assert value(found, "modeldeploy_queue_wait_seconds_count", model_name="digits") >= 1
    assert value(found, "modeldeploy_self_test_passed", model_name="digits") == 1
    low = value(found, "modeldeploy_input_min", model_name="digits", input="image")
    high = value(found, "modeldeploy_input_max", model_name="digits", input="image")
    mean = value(found, "modeldeploy_input_mean", model_name="digits", input="image")
    std = value(found, "modeldeploy_input_std", model_name="digits", input="image")
    assert 0 <= low <= mean <= high <= 16
    assert 0 < std <= high - low


def test_every_metric_the_runtime_exports_is_in_the_catalogue_validate_checks_queries_with(
    runtime: RuntimeProcess,
) -> None:
    http_infer(runtime, pixels(2, seed=12), binary=True)  # every labelled series now exists
    found = metrics(runtime)
    exported = {name for name in found if name.startswith(OUR_PREFIX)}
    # A classifier without a reference profile: every family but the drift ones.
    always = {sample for f in RUNTIME_FAMILIES if f.only_when is None for sample in f.samples()}
    classes = {"modeldeploy_predictions_total", "modeldeploy_predictions_created"}
    assert always < RUNTIME_METRICS
    assert exported == always | classes
    # Every series carries the documented labels, the model under KServe's own label name.
    for family in (
        f for f in RUNTIME_FAMILIES if f.only_when is None or f.samples()[0] in exported
    ):
        for sample in family.samples():
            for labels in found[sample]:
                names = {k for k, _ in labels} - {"le"}
                assert names == set(family.labels), (sample, names)


def test_the_metrics_page_is_the_catalogue_the_runtime_is_checked_against() -> None:
    page = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    assert page == render_catalogue(), "docs/metrics.md is stale: run `make crds`"
