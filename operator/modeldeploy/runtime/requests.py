"""Check a v2 inference request against the model before any of it reaches ONNX Runtime.

Every refusal names the input and what is wrong with it, and becomes HTTP 400 / gRPC
INVALID_ARGUMENT through kserve's ``InvalidRequestError``. Sizes are checked from the declared shape
before the data is decoded, so an oversized request costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeldeploy.runtime.artifact import TensorInfo
from modeldeploy.runtime.errors import InvalidRequestError
from modeldeploy.runtime.imaging import MAX_PIXELS
from modeldeploy.runtime.protocol import RequestTensor, bytes_elements

NUMPY = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


@dataclass(frozen=True)
class Limits:
    """Per-request limits; a request over them is refused, not queued."""

    max_batch: int = 1024
    max_bytes: int = 64 << 20
    """Largest input tensor, in bytes."""
    max_body: int = 256 << 20
    """Largest REST body, in bytes; refused with 413 while it is read."""
    max_image_pixels: int = MAX_PIXELS
    """Largest image, width x height, checked before it is decoded."""


def binary_size_problem(name: str, datatype: str, shape: list[int], size: int) -> str | None:
    """Whether ``size`` bytes of binary data fill ``shape`` of ``datatype``; BYTES is not checked."""
    if datatype not in NUMPY or any(d < 0 for d in shape):
        return None
    expected = math.prod(shape) * np.dtype(NUMPY[datatype]).itemsize
    if size != expected:
        return f"input '{name}': {size} bytes of binary data do not fill shape {shape} ({expected} bytes)"
    return None


def _first_non_numeric(data: Any) -> Any:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif not isinstance(item, (int, float, bool)) or item is None:
            return item
    return None


def _shape_problem(name: str, shape: list[int], expected: TensorInfo) -> str | None:
    if any(d < 0 for d in shape):
        return f"input '{name}' has a negative dimension in shape {shape}"
    if len(shape) != len(expected.shape):
        return (
            f"input '{name}' has rank {len(shape)} (shape {shape}); the model takes rank "
            f"{len(expected.shape)} {list(expected.shape)}"
        )
    for axis, (got, want) in enumerate(zip(shape, expected.shape, strict=True)):
        if want != -1 and got != want:
            return f"input '{name}' has shape {shape}; dimension {axis} must be {want}"
    return None


def _object_array(items: list[bytes]) -> np.ndarray:
    """A 1-D object array of ``items``; numpy would guess other shapes from a plain list."""
    out = np.empty(len(items), dtype=np.object_)
    out[:] = items
    return out


def decode_input(
    request_input: RequestTensor, expected: TensorInfo, limits: Limits, accepts_images: bool
) -> np.ndarray:
    """One request input as a numpy array of the model's dtype (or raw bytes for images).

    Binary data becomes an ``np.frombuffer`` view: no copy, no Python objects per element."""
    name = request_input.name
    datatype = request_input.datatype.upper()
    shape = [int(d) for d in request_input.shape]
    is_image = accepts_images and datatype == "BYTES"
    if not is_image and datatype != expected.datatype:
        allowed = expected.datatype + (" (or BYTES images)" if accepts_images else "")
        raise InvalidRequestError(
            f"input '{name}' has datatype {datatype}; the model takes {allowed}"
        )
    if is_image:
        if any(d < 0 for d in shape) or len(shape) != 1:
            raise InvalidRequestError(
                f"input '{name}': images go as a 1-D BYTES tensor [N], got shape {shape}"
            )
    else:
        problem = _shape_problem(name, shape, expected)
        if problem:
            raise InvalidRequestError(problem)
    batch = shape[0] if shape else 0
    if batch > limits.max_batch:
        raise InvalidRequestError(
            f"input '{name}' has batch {batch}; the limit is {limits.max_batch}"
        )
    count = math.prod(shape)
    if not is_image:
        size = count * np.dtype(NUMPY[datatype]).itemsize
        if size > limits.max_bytes:
            raise InvalidRequestError(
                f"input '{name}' is {size} bytes; the limit is {limits.max_bytes} bytes"
            )
    raw = request_input.raw
    if raw is not None and not is_image:
        problem = binary_size_problem(name, datatype, shape, len(raw))
        if problem:
            raise InvalidRequestError(problem)
        return np.frombuffer(raw, dtype=NUMPY[datatype]).reshape(shape)
    if raw is not None:
        if len(raw) > limits.max_bytes:
            raise InvalidRequestError(
                f"input '{name}' is {len(raw)} bytes; the limit is {limits.max_bytes} bytes"
            )
        elements = bytes_elements(raw, name)
        if len(elements) != count:
            raise InvalidRequestError(
                f"input '{name}': {len(elements)} values do not fill shape {shape} ({count} values)"
            )
        return _object_array(elements)
    data = request_input.data
    if is_image:
        values = list(np.asarray(data, dtype=np.object_).reshape(-1))
        if len(values) != count:
            raise InvalidRequestError(
                f"input '{name}': {len(values)} values do not fill shape {shape} ({count} values)"
            )
        try:  # JSON carries encoded images as base64 text; gRPC as raw bytes
            return _object_array(
                [
                    base64.b64decode(v, validate=True)
                    if isinstance(v, str) or request_input.base64
                    else bytes(v)
                    for v in values
                ]
            )
        except (binascii.Error, ValueError, TypeError) as err:
            raise InvalidRequestError(
                f"input '{name}': images in JSON must be base64 strings ({err})"
            ) from err
    try:
        array: np.ndarray = np.asarray(data)
    except ValueError as err:  # ragged nesting
        raise InvalidRequestError(
            f"input '{name}': values do not form a regular tensor: {err}"
        ) from err
    if array.dtype.kind not in "biuf":
        bad = _first_non_numeric(data)
        raise InvalidRequestError(
            f"input '{name}' holds a non-numeric value {bad!r}; datatype {datatype}"
        )
    if array.size != count:
        raise InvalidRequestError(
            f"input '{name}': {array.size} values do not fill shape {shape} ({count} values)"
        )
    try:
        return array.astype(NUMPY[datatype], copy=False).reshape(shape)
    except (ValueError, OverflowError) as err:
        raise InvalidRequestError(f"input '{name}': values are not {datatype}: {err}") from err


def decode_request(
    request_inputs: list[RequestTensor],
    expected: list[TensorInfo],
    limits: Limits,
    image_input: str | None,
) -> dict[str, np.ndarray]:
    """Every input of the request, checked; names, presence and a common batch size too."""
    by_name = {t.name: t for t in expected}
    arrays: dict[str, np.ndarray] = {}
    for item in request_inputs:
        if item.name not in by_name:
            known = ", ".join(f"'{n}'" for n in by_name)
            raise InvalidRequestError(f"unknown input '{item.name}'; the model takes {known}")
        if item.name in arrays:
            raise InvalidRequestError(f"input '{item.name}' is given twice")
        arrays[item.name] = decode_input(item, by_name[item.name], limits, item.name == image_input)
    missing = [n for n in by_name if n not in arrays]
    if missing:
        raise InvalidRequestError(f"missing input '{missing[0]}'")
    batches = {name: len(a) for name, a in arrays.items()}
    if len(set(batches.values())) > 1:
        raise InvalidRequestError(f"inputs disagree on the batch size: {batches}")
    if 0 in batches.values():
        raise InvalidRequestError("the batch is empty")
    return arrays
