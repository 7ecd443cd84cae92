"""Start the runtime: ``modeldeploy serve PATH`` locally, ``/mnt/models`` inside a KServe pod.

kserve's ModelServer gives gRPC Open Inference Protocol v2, health endpoints and ``/metrics``.
In front of its REST app go the REST infer route (``runtime/rest.py``: binary tensors stay
bytes, where kserve's would become Python lists), ``GET /v2/models/{name}/ready``, which says
why a model is not ready, and a Triton-style ``GET /v2/models/{name}/config``, so Triton's
perf_analyzer can drive this server.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response

from modeldeploy.runtime.artifact import Artifact
from modeldeploy.runtime.drift import DriftWindow
from modeldeploy.runtime.model import OnnxModel
from modeldeploy.runtime.requests import Limits
from modeldeploy.runtime.rest import RestInfer
from modeldeploy.runtime.shadow import ShadowMirror

EVIDENCE_PATH = "/v2/models/{name}/shadow/evidence"


def _add_routes(models: dict[str, OnnxModel], max_body: int) -> None:
    from kserve.model_server import app

    # Outermost, ahead of the middleware kserve adds when it starts (its per-request timing
    # log among them): the infer route's cost is ours alone. Starlette builds the stack on the
    # first request, from this method.
    build_rest_of_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: RestInfer(
        build_rest_of_stack(), models=models, max_body=max_body
    )

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

    async def evidence(name: str) -> JSONResponse:
        shadow = model_for(name).shadow
        kept = shadow.evidence() if shadow is not None else []
        return JSONResponse({"evidence": [e.describe() for e in kept]})

    async def evidence_file(name: str, evidence_id: str) -> Response:
        shadow = model_for(name).shadow
        found = shadow.evidence_file(evidence_id) if shadow is not None else None
        if found is None:
            raise HTTPException(status_code=404, detail=f"no shadow evidence {evidence_id}")
        return Response(found.data, media_type="application/octet-stream")

    # Routes are matched in order: these go before the ones kserve adds when it starts.
    app.add_api_route("/v2/health/ready", server_ready, methods=["GET"])
    app.add_api_route("/v2/models/{name}/ready", ready, methods=["GET"])
    app.add_api_route("/v2/models/{name}/config", config, methods=["GET"])
    # What the operator collects into the artifact store when a shadowed candidate disagrees.
    app.add_api_route(EVIDENCE_PATH, evidence, methods=["GET"])
    app.add_api_route(EVIDENCE_PATH + "/{evidence_id}", evidence_file, methods=["GET"])


def serve(
    path: Path,
    http_port: int = 8080,
    grpc_port: int = 8081,
    max_batch_size: int | None = None,
    max_queue_delay: float | None = None,
    limits: Limits | None = None,
    threads: int | None = None,
    name: str | None = None,
    max_queue_size: int | None = None,
    request_timeout: float | None = None,
    access_log: bool = False,
    drift: DriftWindow | None = None,
    shadow_config: Path | None = None,
    revision: str | None = None,
) -> None:
    """Load the artifact at ``path`` and serve it until SIGTERM; with ``shadow_config``, mirror
    to the candidate that file names, when it names ``revision`` as the source."""
    from kserve import ModelServer

    limits = limits or Limits()
    artifact = Artifact.open(path, name)
    shadow = None
    if shadow_config is not None:
        classifier = artifact.postprocessing.get("type") == "classification"
        shadow = ShadowMirror(artifact.name, shadow_config, revision, classifier)
    model = OnnxModel(
        artifact,
        max_batch_size,
        max_queue_delay,
        limits,
        threads,
        max_queue_size,
        request_timeout,
        drift,
        shadow,
    )
    model.load()  # a failed self-test leaves the model registered but not ready
    _add_routes({model.name: model}, limits.max_body)
    server = ModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        enable_grpc=True,
        workers=1,
        enable_latency_logging=False,  # two log lines per request; the metrics have latency
    )
    if not access_log:  # a line per request costs more than the request on a busy small pod
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    server.register_model(model)
    _use_uvloop()
    server.start([])


def _use_uvloop() -> None:
    """kserve runs uvicorn inside ``asyncio.run``, where uvicorn's own ``loop="auto"`` does not
    apply: the policy is set here instead. uvloop's transports cost the event loop less per
    request than asyncio's selector loop."""
    import asyncio

    try:
        import uvloop
    except ImportError:  # a plain asyncio loop works too, only slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # kserve asks for the current loop before its asyncio.run; uvloop's policy makes none
    # implicitly.
    asyncio.set_event_loop(asyncio.new_event_loop())
