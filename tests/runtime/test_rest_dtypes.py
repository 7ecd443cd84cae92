"""Every v2 datatype over REST, binary and JSON, in and out: the runtime's answer is
onnxruntime's, bit for bit. BYTES goes in as encoded images and comes out as labels."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient

from tests.runtime import graphs
from tests.runtime.server import RuntimeProcess, running

FORMS = ("binary", "json")


def values(datatype: str, rows: int) -> np.ndarray:
    """Values that catch a lossy codec: signs, extremes, -0.0, subnormals and fractions that
    have no short decimal form."""
    dtype = graphs.DTYPES[datatype][2]
    rng = np.random.default_rng(7)
    shape = (rows, graphs.WIDTH)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    info: Any = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    out = (
        rng.standard_normal(shape).astype(dtype) * dtype(3)
        if np.dtype(dtype).kind == "f"
        else rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    )
    flat = out.reshape(-1)
    flat[0], flat[1] = info.max, info.min
    if np.dtype(dtype).kind == "f":
        flat[2], flat[3], flat[4] = dtype(-0.0), info.smallest_subnormal, dtype(1) / dtype(3)
    return out


def test_every_datatype_in_every_form_is_answered_as_onnxruntime_answers_it_bit_for_bit(
    dtypes_artifact: Path, tmp_path: Path
) -> None:
    session = ort.InferenceSession(
        str(dtypes_artifact / "dtypes" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    feeds = {f"in_{t.lower()}": values(t, rows=3) for t in graphs.DTYPES}
    expected = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True)
    )
    with running(dtypes_artifact, tmp_path) as server:
        checked = answers_checked(server, feeds, expected)
    assert len(checked) == 4 * len(graphs.DTYPES)


def answers_checked(
    server: RuntimeProcess, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray]
) -> list[str]:
    """Send ``feeds`` in each form and compare every output with ``expected``, bit for bit."""
    client = httpclient.InferenceServerClient(server.http)
    checked = []
    for form_in in FORMS:
        for form_out in FORMS:
            items = []
            for datatype in graphs.DTYPES:
                name = f"in_{datatype.lower()}"
                item = httpclient.InferInput(name, [3, graphs.WIDTH], datatype)
                item.set_data_from_numpy(feeds[name], binary_data=form_in == "binary")
                items.append(item)
            outputs = [
                httpclient.InferRequestedOutput(name, binary_data=form_out == "binary")
                for name in expected
            ]
            result = client.infer("dtypes", items, outputs=outputs)
            for name, want in expected.items():
                got = result.as_numpy(name)
                context = f"{name}: {form_in} in, {form_out} out"
                assert got is not None, context
                assert got.dtype == want.dtype, context
                assert got.shape == want.shape, context
                assert got.tobytes() == want.tobytes(), f"{context}: {got} != {want}"
                checked.append(context)
    return checked


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_bytes_images_in_and_labels_out_are_onnxruntimes_top_k_in_every_form(
    image_artifact: Path, tmp_path: Path
) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=(24, 24), dtype=np.uint8) for _ in range(5)]
    # The reference: Pillow's decode and bilinear resize, onnxruntime, top-2 by score.
    pixels = np.stack(
        [
            np.asarray(Image.fromarray(i).resize((8, 8), Image.Resampling.BILINEAR), np.float32)
            for i in images
        ]
    )[:, None]
    session = ort.InferenceSession(
        str(image_artifact / "digits-images" / "1" / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    probabilities = session.run(None, {"image": pixels})[0]
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :2]
    names = (image_artifact / "digits-images" / "labels.txt").read_text().split()
    want_labels = [names[k] for row in top for k in row]
    want_scores = np.take_along_axis(probabilities, top, axis=1)
    blobs = [png(i) for i in images]

    with running(image_artifact, tmp_path) as server:
        client = httpclient.InferenceServerClient(server.http)
        for form_in in FORMS:
            for form_out in FORMS:
                item = httpclient.InferInput("image", [len(images)], "BYTES")
                if form_in == "binary":
                    item.set_data_from_numpy(np.array(blobs, dtype=np.object_), binary_data=True)
                else:  # JSON carries images as base64 text
                    encoded = [base64.b64encode(b) for b in blobs]
                    item.set_data_from_numpy(np.array(encoded, dtype=np.object_), binary_data=False)
                binary = form_out == "binary"
                result = client.infer(
                    "digits-images",
                    [item],
                    outputs=[
                        httpclient.InferRequestedOutput("labels", binary_data=binary),
                        httpclient.InferRequestedOutput("scores", binary_data=binary),
                    ],
                )
                context = f"{form_in} in, {form_out} out"
                labels = result.as_numpy("labels")
                assert labels.shape == top.shape, context
                assert [_text(v) for v in labels.reshape(-1)] == want_labels, context
                scores = result.as_numpy("scores")
                assert scores.dtype == want_scores.dtype, context
                assert scores.tobytes() == want_scores.tobytes(), context


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
