"""The Open Inference Protocol v2 over REST, JSON and the binary tensor extension, without
turning tensor data into Python objects.

A binary input is a ``memoryview`` into the request body, later an ``np.frombuffer`` view; a
binary output is written straight from its array. JSON goes through orjson, which reads and
writes numpy arrays natively. Both directions are pure functions of bytes and typed values, so
the REST layer (``runtime/rest.py``) and the tests use them alike.

kserve's own REST path decodes binary tensors into Python lists and back, which made REST a
fifth of Triton's throughput on ResNet-18 (docs/benchmarks.md#runtime).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modeldeploy.runtime.errors import InvalidRequestError

BYTES_LENGTH = 4
"""Each BYTES element in the binary extension is a little-endian uint32 length, then the bytes."""


@dataclass(frozen=True)
class RequestTensor:
    """One input as the client sent it, before it is checked against the model."""

    name: str
    datatype: str
    shape: list[int]
    raw: memoryview | bytes | None
    """Binary data (REST's binary extension, gRPC's raw contents), or None for typed data."""
    data: Any = None
    """JSON (or gRPC typed) values, when ``raw`` is None."""
    base64: bool = False
    """BYTES elements are base64 text (``parameters.content_type``)."""


@dataclass(frozen=True)
class InferRequest:
    """A v2 inference request: its inputs, and which outputs to return in which form."""

    id: str
    inputs: list[RequestTensor]
    outputs: list[str] | None
    """Requested outputs by name, in order; None for all of them."""
    binary: dict[str, bool]
    """Per requested output, whether it goes as binary data."""
    binary_default: bool
    """``parameters.binary_data_output``: the form of outputs not named in ``binary``."""

    def wants_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_default)


def _malformed(where: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(f"malformed request: {where}: {what}")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(where, "must be an object")
    return value


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    return _object(item.get("parameters") or {}, f"{where}.parameters")


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    ):
        raise _malformed(where, "must be a list of integers")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _malformed(where, "Field required" if value is None else "must be a string")
    return value


def _tensors(items: Any, key: str, body: bytes, length: int) -> list[RequestTensor]:
    """The tensors listed under ``key`` (``inputs`` of a request, ``outputs`` of an answer),
    each binary one a view of ``body`` after the ``length``-byte JSON header."""
    if not isinstance(items, list):
        raise _malformed(key, "must be a list")
    view = memoryview(body)
    offset = length
    tensors = []
    kind = key.rstrip("s")
    for i, item in enumerate(items):
        where = f"{key}.{i}"
        item = _object(item, where)
        name = _string(item.get("name"), f"{where}.name")
        datatype = _string(item.get("datatype"), f"{where}.datatype").upper()
        shape = _shape(item.get("shape"), f"{where}.shape")
        parameters = _parameters(item, where)
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0:
                raise _malformed(f"{where}.parameters.binary_data_size", "must be a count of bytes")
            if offset + size > len(body):
                raise InvalidRequestError(
                    f"{kind} '{name}': binary data ends before its declared {size} bytes"
                )
            tensors.append(RequestTensor(name, datatype, shape, view[offset : offset + size]))
            offset += size
            continue
        if "data" not in item:
            raise _malformed(f"{where}.data", "Field required")
        tensors.append(
            RequestTensor(
                name,
                datatype,
                shape,
                None,
                item["data"],
                parameters.get("content_type") == "base64",
            )
        )
    if offset != len(body):
        raise InvalidRequestError(
            f"the body has {len(body) - offset} bytes beyond its declared binary tensors"
        )
    return tensors


def parse_request(body: bytes, header_length: int | None) -> InferRequest:
    """A v2 request from its REST body. ``header_length`` is the binary extension's
    ``Inference-Header-Content-Length``; without it the whole body is JSON."""
    length = len(body) if header_length is None else header_length
    if not 0 <= length <= len(body):
        raise InvalidRequestError(
            f"Inference-Header-Content-Length {length} is outside the {len(body)}-byte body"
        )
    try:
        header = orjson.loads(memoryview(body)[:length])
    except orjson.JSONDecodeError as err:
        raise InvalidRequestError(f"malformed request: the JSON does not parse: {err}") from err
    header = _object(header, "request")
    if "inputs" not in header:
        raise _malformed("inputs", "Field required")
    inputs = _tensors(header["inputs"], "inputs", body, length)
    outputs: list[str] | None = None
    binary: dict[str, bool] = {}
    if header.get("outputs") is not None:
        if not isinstance(header["outputs"], list):
            raise _malformed("outputs", "must be a list")
        outputs = []
        for i, item in enumerate(header["outputs"]):
            item = _object(item, f"outputs.{i}")
            name = _string(item.get("name"), f"outputs.{i}.name")
            outputs.append(name)
            flag = _parameters(item, f"outputs.{i}").get("binary_data")
            if flag is not None:
                binary[name] = bool(flag)
    request_id = header.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else str(uuid.uuid4()),
        inputs=inputs,
        outputs=outputs,
        binary=binary,
        binary_default=bool(_parameters(header, "request").get("binary_data_output", False)),
    )


def bytes_elements(raw: memoryview | bytes, name: str) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then data."""
    elements, i, view = [], 0, memoryview(raw)
    while i < len(view):
        if i + BYTES_LENGTH > len(view):
            raise InvalidRequestError(
                f"input '{name}': a BYTES element's length is cut off at byte {i}"
            )
        n = int.from_bytes(view[i : i + BYTES_LENGTH], "little")
        i += BYTES_LENGTH
        if i + n > len(view):
            raise InvalidRequestError(
                f"input '{name}': a BYTES element declares {n} bytes; {len(view) - i} remain"
            )
        elements.append(bytes(view[i : i + n]))
        i += n
    return elements


def _bytes_binary(array: np.ndarray) -> bytes:
    parts = []
    for element in array.reshape(-1):
        data = element if isinstance(element, bytes) else str(element).encode()
        parts.append(len(data).to_bytes(BYTES_LENGTH, "little"))
        parts.append(data)
    return b"".join(parts)


def _bytes_json(array: np.ndarray) -> tuple[list[str], dict[str, str]]:
    """BYTES as JSON strings: UTF-8 text as is; a tensor holding any other bytes goes as base64
    with ``content_type: base64``, as JSON clients send images."""
    elements = [e if isinstance(e, bytes) else str(e).encode() for e in array.reshape(-1)]
    try:
        return [e.decode() for e in elements], {}
    except UnicodeDecodeError:
        return [base64.b64encode(e).decode() for e in elements], {"content_type": "base64"}


def encode_response(
    model: str, request: InferRequest, outputs: list[tuple[str, str, np.ndarray]]
) -> tuple[bytes, int | None]:
    """The REST body for ``outputs`` (name, v2 datatype, array), and the JSON header's length
    when any output goes as binary data (for ``Inference-Header-Content-Length``)."""
    described: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for name, datatype, array in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.wants_binary(name):
            if datatype == "BYTES":
                chunk: bytes | memoryview = _bytes_binary(array)
            else:
                chunk = np.ascontiguousarray(array).data.cast("B")
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif datatype == "BYTES":
            entry["data"], parameters = _bytes_json(array)
            if parameters:
                entry["parameters"] = parameters
        else:
            entry["data"] = np.ascontiguousarray(array).reshape(-1)
        described.append(entry)
    header = orjson.dumps(
        {"model_name": model, "id": request.id, "outputs": described},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


NUMERIC = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64,
           "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8,
           "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
           "BOOL": np.bool_}  # fmt: skip
"""v2 datatypes whose elements are numbers, as numpy reads them."""
DATATYPES = {np.dtype(dtype): name for name, dtype in NUMERIC.items()}


def datatype(array: np.ndarray) -> str:
    """The v2 datatype of ``array``: BYTES for an object array of bytes."""
    return "BYTES" if array.dtype == np.object_ else DATATYPES[array.dtype]


def encode_request(
    inputs: list[tuple[str, str, np.ndarray]], outputs: list[str]
) -> tuple[bytes, int]:
    """A REST request (binary extension throughout) for ``inputs`` (name, v2 datatype, array),
    asking for ``outputs`` as binary: the body and its JSON header's length. What the shadow
    mirror sends; the request's own form (JSON or binary, REST or gRPC) does not matter."""
    described: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for name, datatype, array in inputs:
        if datatype == "BYTES":
            chunk: bytes | memoryview = _bytes_binary(array)
        else:
            chunk = np.ascontiguousarray(array).data.cast("B")
        described.append({"name": name, "datatype": datatype, "shape": list(array.shape),
                          "parameters": {"binary_data_size": len(chunk)}})  # fmt: skip
        chunks.append(chunk)
    header = orjson.dumps(
        {
            "inputs": described,
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
    )
    return b"".join([header, *chunks]), len(header)


def parse_answer(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """The numeric outputs of a v2 REST answer, by name (BYTES outputs are left out).
    ``InvalidRequestError`` when the answer is malformed: a shadow counts it as the candidate's
    error."""
    length = len(body) if header_length is None else header_length
    if not 0 <= length <= len(body):
        raise InvalidRequestError(f"answer header length {length} is outside {len(body)} bytes")
    try:
        header = _object(orjson.loads(memoryview(body)[:length]), "answer")
    except orjson.JSONDecodeError as err:
        raise InvalidRequestError(f"the answer's JSON does not parse: {err}") from err
    found: dict[str, np.ndarray] = {}
    for tensor in _tensors(header.get("outputs"), "outputs", body, length):
        dtype = NUMERIC.get(tensor.datatype)
        if dtype is None:
            continue
        count = int(np.prod(tensor.shape)) if tensor.shape else 1
        array: np.ndarray
        if tensor.raw is not None:
            if len(tensor.raw) != count * np.dtype(dtype).itemsize:
                raise InvalidRequestError(
                    f"output '{tensor.name}': {len(tensor.raw)} bytes for shape {tensor.shape}"
                )
            array = np.frombuffer(tensor.raw, dtype=dtype)
        else:
            try:
                array = np.asarray(tensor.data, dtype=dtype).reshape(-1)
            except (TypeError, ValueError) as err:
                raise InvalidRequestError(f"output '{tensor.name}': {err}") from err
            if array.size != count:
                raise InvalidRequestError(
                    f"output '{tensor.name}': {array.size} values for shape {tensor.shape}"
                )
        found[tensor.name] = array.reshape(tensor.shape)
    return found
