"""The v2 REST codec (runtime/protocol.py) as a pure function of bytes: binary inputs stay views
of the body, and every malformed body is refused naming what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modeldeploy.runtime.artifact import TensorInfo
from modeldeploy.runtime.errors import InvalidRequestError
from modeldeploy.runtime.protocol import bytes_elements, encode_response, parse_request
from modeldeploy.runtime.requests import Limits, decode_request

SHORT_HEADER = json.dumps(
    {
        "inputs": [
            {"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
        ]
    }
).encode()


def binary_body(header: dict[str, object], *chunks: bytes) -> tuple[bytes, int]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), len(head)


def test_a_binary_input_is_a_view_of_the_body_not_a_copy() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    body, length = binary_body(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 48},
                }
            ]
        },
        x.tobytes(),
    )
    buffer = bytearray(body)
    request = parse_request(buffer, length)
    arrays = decode_request(request.inputs, [TensorInfo("x", "FP32", (-1, 4))], Limits(), None)
    np.testing.assert_array_equal(arrays["x"], x)
    assert np.shares_memory(arrays["x"], np.frombuffer(buffer, dtype=np.uint8))


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b'{"inputs": [', None, "malformed request: the JSON does not parse"),
        (b"[1, 2]", None, "malformed request: request: must be an object"),
        (b'{"inputs": {}}', None, "malformed request: inputs: must be a list"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "data": []}]}',
            None,
            "malformed request: inputs.0.shape: must be a list of integers",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}',
            None,
            "malformed request: inputs.0.data: Field required",
        ),
        (b'{"inputs": []}', 99, "Inference-Header-Content-Length 99 is outside the 14-byte body"),
        (
            SHORT_HEADER + b"\0\0\0\0",
            len(SHORT_HEADER),
            "input 'x': binary data ends before its declared 8 bytes",
        ),
        (b'{"inputs": []}extra', 14, "the body has 5 bytes beyond its declared binary tensors"),
    ],
    ids=[
        "json",
        "not-an-object",
        "inputs-not-a-list",
        "shape",
        "data",
        "header-length",
        "short-binary",
        "trailing",
    ],
)
def test_a_malformed_body_is_refused_naming_the_problem(
    body: bytes, length: int | None, message: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        parse_request(body, length)
    assert str(refused.value).startswith(message)


def test_bytes_elements_are_length_prefixed_and_a_cut_element_is_refused() -> None:
    raw = b"".join(len(e).to_bytes(4, "little") + e for e in (b"ab", b"", b"\xff\x00"))
    assert bytes_elements(raw, "s") == [b"ab", b"", b"\xff\x00"]
    with pytest.raises(InvalidRequestError, match="declares 9 bytes; 2 remain"):
        bytes_elements((9).to_bytes(4, "little") + b"ab", "s")
    with pytest.raises(InvalidRequestError, match="length is cut off at byte 0"):
        bytes_elements(b"\x01\x00", "s")


def test_outputs_go_binary_or_json_as_each_asks_and_bytes_that_are_not_text_go_as_base64() -> None:
    body, length = binary_body(
        {
            "inputs": [],
            "outputs": [
                {"name": "a", "parameters": {"binary_data": True}},
                {"name": "b"},
                {"name": "c"},
            ],
        }
    )
    request = parse_request(body, length)
    scores = np.array([[0.25, 1 / 3]], dtype=np.float32)
    labels = np.array([b"cat", b"dog"], dtype=np.object_)
    raw = np.array([b"\xff\xfe"], dtype=np.object_)
    data, json_length = encode_response(
        "m", request, [("a", "FP32", scores), ("b", "BYTES", labels), ("c", "BYTES", raw)]
    )
    assert json_length is not None
    header = json.loads(data[:json_length])
    assert header["outputs"][0] == {
        "name": "a",
        "datatype": "FP32",
        "shape": [1, 2],
        "parameters": {"binary_data_size": 8},
    }
    assert (
        np.frombuffer(data[json_length:], dtype=np.float32).tolist() == scores.reshape(-1).tolist()
    )
    assert header["outputs"][1]["data"] == ["cat", "dog"]
    assert header["outputs"][2] == {
        "name": "c",
        "datatype": "BYTES",
        "shape": [1],
        "data": ["//4="],
        "parameters": {"content_type": "base64"},
    }
    # Nothing binary: plain JSON, no header length.
    plain = parse_request(b'{"inputs": []}', None)
    data, json_length = encode_response("m", plain, [("a", "FP32", scores)])
    assert json_length is None
    assert (
        np.array(json.loads(data)["outputs"][0]["data"], dtype=np.float32).tobytes()
        == scores.tobytes()
    )
