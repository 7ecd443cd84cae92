"""Start the runtime: ``modeldeploy serve PATH`` locally, ``/mnt/models`` inside a KServe pod.

kserve's ModelServer gives REST and gRPC Open Inference Protocol v2 (binary tensor extension
included), health endpoints and ``/metrics``. Two routes are added in front of its own:
``GET /v2/models/{name}/ready``, which says why a model is not ready, and a Triton-style
``GET /v2/models/{name}/config``, so Triton's perf_analyzer can drive this server.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from modeldeploy.runtime.artifact import Artifact
from modeldeploy.runtime.model import OnnxModel
from modeldeploy.runtime.requests import Limits, binary_size_problem


class JsonByDefault:
    """ASGI middleware: a v2 infer request without the binary extension's
    ``Inference-Header-Content-Length`` is JSON, whatever its Content-Type says.

    tritonclient's HTTP client sends JSON requests with no Content-Type; kserve's endpoint then
    reads the body as bytes and refuses it as a binary request without the header.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/infer")
        ):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            json_length = dict(headers).get(b"inference-header-content-length")
            if json_length is None:
                headers.append((b"content-type", b"application/json"))
            else:
                headers.append((b"content-type", b"application/octet-stream"))
                body = await _read_body(receive)
                problem = _binary_problem(body, json_length)
                if problem:
                    await _send_json(send, 400, {"error": problem})
                    return
                body, length = _bytes_as_base64(body, int(json_length))
                headers = [(k, v) for k, v in headers if k != b"inference-header-content-length"]
                headers.append((b"inference-header-content-length", str(length).encode()))
                receive = _replay(body)
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})


def _bytes_as_base64(body: bytes, length: int) -> tuple[bytes, int]:
    """Move binary BYTES tensors (encoded images) into the JSON header as base64 strings.

    kserve turns every binary tensor into JSON-able data while decoding, and a PNG is not UTF-8
    text, so it would fail with a 500. Base64 in the JSON is what v2 JSON clients send for
    images anyway; the runtime decodes it (``requests.decode_input``). Other tensors stay binary.
    """
    header = json.loads(body[:length])
    offset, kept = length, []
    changed = False
    for item in header.get("inputs", []):
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        chunk = body[offset : offset + int(size)]
        offset += int(size)
        if str(item.get("datatype")).upper() != "BYTES":
            kept.append(chunk)
            continue
        elements, i = [], 0
        while i + 4 <= len(chunk):
            n = int.from_bytes(chunk[i : i + 4], "little")
            elements.append(base64.b64encode(chunk[i + 4 : i + 4 + n]).decode())
            i += 4 + n
        item["data"] = elements
        item["parameters"] = {
            k: v for k, v in item["parameters"].items() if k != "binary_data_size"
        }
        item["parameters"]["content_type"] = "base64"
        changed = True
    if not changed:
        return body, length
    new_header = json.dumps(header).encode()
    return new_header + b"".join(kept) + body[offset:], len(new_header)


def _binary_problem(body: bytes, json_length: bytes) -> str | None:
    """Check the binary extension's sizes before kserve decodes them (it would answer a short
    tensor with a 500 from numpy's reshape)."""
    try:
        length = int(json_length)
        header = json.loads(body[:length])
        offset = length
        for item in header.get("inputs", []):
            size = (item.get("parameters") or {}).get("binary_data_size")
            if size is None:
                continue
            if offset + int(size) > len(body):
                return f"input '{item['name']}': binary data ends before its declared {size} bytes"
            problem = binary_size_problem(
                item["name"],
                str(item["datatype"]).upper(),
                [int(d) for d in item["shape"]],
                int(size),
            )
            if problem:
                return problem
            offset += int(size)
    except (ValueError, KeyError, TypeError) as err:
        return f"malformed binary request: {err}"
    return None


async def _malformed_request(request: Any, exc: Exception) -> JSONResponse:
    """A body that is not a v2 request at all: 400 with the first problem, as the v2 protocol
    wants ``{"error": ...}``, rather than FastAPI's 422 dump of every union branch."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
    first = next((e for e in errors if "InferenceRequest" in map(str, e.get("loc", ()))), None) or (
        errors[0] if errors else {}
    )
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "InferenceRequest"))
    return JSONResponse(
        {"error": f"malformed request: {where}: {first.get('msg', 'invalid')}"}, status_code=400
    )


def _add_routes(models: dict[str, OnnxModel]) -> None:
    from kserve.model_server import app

    app.add_middleware(JsonByDefault)
    app.add_exception_handler(RequestValidationError, _malformed_request)

    def model_for(name: str) -> OnnxModel:
        model = models.get(name)
        if model is None:
            raise HTTPException(status_code=404, detail=f"Model with name {name} does not exist.")
        return model

    async def ready(name: str) -> JSONResponse:
        model = model_for(name)
        body = {"name": name, "ready": bool(model.ready)}
        if not model.ready:
            body["reason"] = model.not_ready_reason
        return JSONResponse(body, status_code=200 if model.ready else 503)

    async def config(name: str) -> JSONResponse:
        return JSONResponse(model_for(name).artifact.triton_config())

    async def server_ready() -> JSONResponse:
        waiting = {n: m.not_ready_reason for n, m in models.items() if not m.ready}
        if waiting:
            return JSONResponse({"ready": False, "models": waiting}, status_code=503)
        return JSONResponse({"ready": True})

    # Routes are matched in order: these go before the ones kserve adds when it starts.
    app.add_api_route("/v2/health/ready", server_ready, methods=["GET"])
    app.add_api_route("/v2/models/{name}/ready", ready, methods=["GET"])
    app.add_api_route("/v2/models/{name}/config", config, methods=["GET"])


def serve(
    path: Path,
    http_port: int = 8080,
    grpc_port: int = 8081,
    max_batch_size: int | None = None,
    max_queue_delay: float | None = None,
    limits: Limits | None = None,
    threads: int | None = None,
    name: str | None = None,
) -> None:
    """Load the artifact at ``path`` and serve it until SIGTERM."""
    from kserve import ModelServer

    model = OnnxModel(Artifact.open(path, name), max_batch_size, max_queue_delay, limits, threads)
    model.load()  # a failed self-test leaves the model registered but not ready
    _add_routes({model.name: model})
    server = ModelServer(http_port=http_port, grpc_port=grpc_port, enable_grpc=True, workers=1)
    server.register_model(model)
    server.start([])
