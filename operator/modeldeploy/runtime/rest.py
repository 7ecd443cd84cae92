"""The REST infer route, answered ahead of kserve's: ``POST /v2/models/{name}[/versions/{v}]/infer``.

An ASGI middleware rather than a FastAPI route: the body is read once, into one buffer, with the
size cap enforced while it arrives (413 before an oversized body is read whole), and the answer
is written as bytes. Nothing between the socket and ``protocol`` builds Python objects per
tensor element. Every other path (health, metadata, metrics, v1) goes on to kserve's app.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from modeldeploy.runtime import protocol
from modeldeploy.runtime.errors import (
    BodyTooLargeError,
    InvalidRequestError,
    Outcome,
    OverloadedError,
    UnknownModelError,
    refusal,
)

logger = logging.getLogger("modeldeploy.runtime")

INFER_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/[^/]+)?/infer")

Headers = list[tuple[bytes, bytes]]


class Servable(Protocol):
    """What the REST route needs of a model (``OnnxModel`` is one)."""

    name: str

    def count(self, outcome: Outcome) -> None: ...

    def check_room(self) -> None: ...

    async def infer(self, request: protocol.InferRequest) -> list[Any]: ...


class ClientGoneError(Exception):
    """The client disconnected before its body arrived; there is no one to answer."""


async def read_body(receive: Any, declared: bytes | None, cap: int) -> bytes:
    """The whole request body, refused with ``BodyTooLargeError`` as soon as it is known to be over
    ``cap``: from ``Content-Length`` before reading, or while a chunked body streams in."""
    length = None
    if declared is not None:
        try:
            length = int(declared)
        except ValueError as err:
            raise InvalidRequestError(
                f"Content-Length {declared.decode(errors='replace')!r} is not a number"
            ) from err
        if length > cap:
            raise BodyTooLargeError(f"the body is {length} bytes; the limit is {cap} bytes")
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > cap:
            raise BodyTooLargeError(f"the body is over {cap} bytes, the limit")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    if length is not None and total != length:
        raise InvalidRequestError(f"the body has {total} bytes; Content-Length said {length}")
    # One copy of each chunk; binary tensors are then views of this one buffer.
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header_length(headers: Mapping[bytes, bytes]) -> int | None:
    value = headers.get(b"inference-header-content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as err:
        raise InvalidRequestError(
            f"Inference-Header-Content-Length {value.decode(errors='replace')!r} is not a number"
        ) from err


def _json(status: int, body: dict[str, Any]) -> tuple[int, Headers, bytes]:
    return status, [(b"content-type", b"application/json")], orjson.dumps(body)


def error_answer(err: Exception) -> tuple[int, Headers, bytes]:
    """The v2 error body, ``{"error": reason}``, with the status ``errors.refusal`` gives."""
    status = refusal(err).http
    if status == 500:  # the runtime's own failure; refusals are counted in the metrics instead
        logger.error("%s: %s", type(err).__name__, err)
    answer = _json(status, {"error": str(err)})
    if isinstance(err, OverloadedError):
        answer[1].append((b"retry-after", b"1"))
    return answer


class RestInfer:
    """ASGI middleware: v2 infer requests are answered here; everything else passes through."""

    def __init__(self, app: Any, models: Mapping[str, Servable], max_body: int) -> None:
        self.app = app
        self.models = models
        self.max_body = max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = (
            INFER_PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        try:
            status, headers, body = await self.answer(match["name"], scope, receive)
        except ClientGoneError:
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def answer(self, name: str, scope: Any, receive: Any) -> tuple[int, Headers, bytes]:
        model = self.models.get(name)
        try:
            if model is None:
                raise UnknownModelError(name)
            # A full queue refuses before the body is read: under overload, reading hundreds of
            # KiB only to refuse them starved the event loop (uvicorn discards the unread rest
            # and keeps the connection).
            model.check_room()
            headers = dict(scope["headers"])
            encoding = headers.get(b"content-encoding", b"identity").decode(errors="replace")
            if encoding != "identity":
                raise InvalidRequestError(
                    f"Content-Encoding {encoding} is not supported; send the body uncompressed"
                )
            header_length = _header_length(headers)
            body = await read_body(receive, headers.get(b"content-length"), self.max_body)
            request = protocol.parse_request(body, header_length)
        except ClientGoneError:
            raise
        except Exception as err:
            if model is not None:
                model.count(refusal(err).outcome)
            return error_answer(err)
        try:
            outputs = await model.infer(request)
        except Exception as err:
            return error_answer(err)
        data, json_length = protocol.encode_response(model.name, request, outputs)
        if json_length is None:
            return 200, [(b"content-type", b"application/json")], data
        return (
            200,
            [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(json_length).encode()),
            ],
            data,
        )
