"""``OnnxModel``: a ``kserve.Model`` serving one staged artifact with ONNX Runtime."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from grpc_interceptor.exceptions import GrpcException
from kserve import InferOutput, InferResponse, Model
from kserve import InferRequest as KserveRequest

from modeldeploy.api.metric_names import MAX_COUNTED_CLASSES
from modeldeploy.artifacts.golden import agree
from modeldeploy.runtime import hardware, imaging, metrics, postprocessing, protocol
from modeldeploy.runtime.artifact import Artifact
from modeldeploy.runtime.batcher import DynamicBatcher
from modeldeploy.runtime.drift import DriftMonitor, DriftWindow
from modeldeploy.runtime.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    NotReadyError,
    Outcome,
    refusal,
)
from modeldeploy.runtime.protocol import InferRequest, RequestTensor
from modeldeploy.runtime.requests import Limits, decode_request
from modeldeploy.runtime.shadow import ShadowMirror

logger = logging.getLogger("modeldeploy.runtime")


def _request_tensor(item: Any) -> RequestTensor:
    """A kserve ``InferInput`` (from gRPC) as the runtime's own request tensor."""
    parameters = item.parameters if isinstance(item.parameters, dict) else {}
    raw = getattr(item, "_raw_data", None)
    return RequestTensor(
        name=item.name,
        datatype=str(item.datatype).upper(),
        shape=[int(d) for d in item.shape],
        raw=raw,
        data=None if raw is not None else item.data,
        base64=parameters.get("content_type") == "base64",
    )


class OnnxModel(Model):  # type: ignore[misc]
    """Loads the artifact, proves it on its golden samples, then serves it with batching."""

    def __init__(
        self,
        artifact: Artifact,
        max_batch_size: int | None = None,
        max_queue_delay: float | None = None,
        limits: Limits | None = None,
        threads: int | None = None,
        max_queue_size: int | None = None,
        request_timeout: float | None = None,
        drift: DriftWindow | None = None,
        shadow: ShadowMirror | None = None,
    ) -> None:
        super().__init__(artifact.name)
        self.artifact = artifact
        self.max_batch_size = artifact.max_batch_size if max_batch_size is None else max_batch_size
        self.max_queue_delay = (
            artifact.max_queue_delay_s if max_queue_delay is None else max_queue_delay
        )
        self.limits = limits or Limits()
        self.max_queue_size = artifact.max_queue_size if max_queue_size is None else max_queue_size
        self.request_timeout = (
            artifact.request_timeout_s if request_timeout is None else request_timeout
        )
        self.threads = threads or hardware.cpu_limit()
        self.not_ready_reason = "loading"
        self.providers: list[str] = []
        self.session: Any = None
        self.batcher: DynamicBatcher | None = None
        self._current_run: Any = None
        self._classes: list[Any] = []
        """The per-class answer counters, for a classifier (``modeldeploy_predictions``)."""
        self.stats = metrics.InputStatistics(self.name)
        reference = artifact.manifest.reference
        window, asked = artifact.manifest.drift_window, drift or DriftWindow()
        self.drift = (
            DriftMonitor(
                self.name,
                reference,
                asked.requests or window.requests,
                asked.seconds or window.seconds,
            )
            if reference is not None
            else None
        )
        """Drift against the artifact's reference profile; None when it has none."""
        self.shadow = shadow
        """Mirrors a sample of what this model serves to a shadowed candidate, when told to."""
        pre = artifact.preprocessing or {}
        self.image_input = artifact.inputs[0].name if pre.get("resize") else None
        self.labels = artifact.labels()

    # --- loading -------------------------------------------------------------------------
    def load(self) -> bool:
        import onnxruntime as ort

        self.artifact.verify_model()  # ArtifactError: the process refuses to serve

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # No spin-waiting between ops: the spinning threads burn the cores the event loop needs
        # to read the next requests (on 2 cores, c=32 went from 50 to 56 req/s without it).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.providers = hardware.execution_providers(
            ort.get_available_providers(), hardware.gpu_visible()
        )
        self.session = ort.InferenceSession(
            str(self.artifact.model_path), options, providers=self.providers
        )
        self._output_names = [o.name for o in self.session.get_outputs()]
        # One worker thread: batches run one at a time with all the CPU threads each.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{self.name}")
        self._decoder = ThreadPoolExecutor(self.threads, thread_name_prefix=f"img-{self.name}")
        self.batcher = DynamicBatcher(
            self._run,
            self.max_batch_size,
            self.max_queue_delay,
            executor,
            self._observe_batch,
            self.max_queue_size,
            self._abandon,
        )
        # Every outcome's series exists from the start at 0, so a rate over the first errors
        # sees them (a series born at 3 shows no increase): the canary analysis reads these.
        for outcome in Outcome:
            metrics.REQUESTS.labels(self.name, outcome.value)
        for histogram in (metrics.LATENCY, metrics.BATCH_ROWS, metrics.QUEUE_WAIT):
            histogram.labels(self.name)
        batcher = self.batcher
        metrics.QUEUED.labels(self.name).set_function(lambda: batcher.waiting)
        # Answers by class, for a classifier's first output [N, classes]: every class's series
        # exists from the start at 0, so an increase over a step counts its first answers too.
        first = self.artifact.outputs[0].shape if self.artifact.outputs else []
        if len(first) == 2 and 2 <= first[1] <= MAX_COUNTED_CLASSES:
            self._classes = [metrics.PREDICTIONS.labels(self.name, str(c)) for c in range(first[1])]
        self.ready = self._self_test()
        return bool(self.ready)

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        import onnxruntime as ort

        options = ort.RunOptions()
        self._current_run = options  # one worker thread: one run at a time
        try:
            return list(self.session.run(self._output_names, inputs, options))
        finally:
            self._current_run = None

    def _abandon(self) -> None:
        """Stop the run in progress: every request in its batch has passed its deadline."""
        run = self._current_run
        if run is not None:
            run.terminate = True

    def _self_test(self) -> bool:
        """Run the golden samples (this is the warm-up too) and compare with the stored outputs."""
        inputs, expected, atol, rtol = self.artifact.golden()
        if not inputs:
            self.not_ready_reason = ""
            metrics.SELF_TEST.labels(self.name).set(1)
            logger.warning(
                "%s: no golden samples in the artifact; serving without a self-test", self.name
            )
            return True
        started = time.monotonic()
        got = dict(zip(self._output_names, self._run(inputs), strict=True))
        agreement = agree(got, expected, atol, rtol, of="golden")
        worst, failures = agreement.worst, list(agreement.failures)
        metrics.SELF_TEST_ERROR.labels(self.name).set(worst)
        try:  # post-processing too: labels that do not fit the classes would fail every request
            self._postprocess(got)
        except Exception as err:
            failures.append(f"post-processing failed on the golden outputs: {err}")
        if failures:
            self.not_ready_reason = (
                f"self-test failed on {len(next(iter(inputs.values())))} golden samples with "
                f"{self.providers[0]}: " + "; ".join(failures)
            )
            metrics.SELF_TEST.labels(self.name).set(0)
            logger.error("%s: %s", self.name, self.not_ready_reason)
            return False
        self.not_ready_reason = ""
        metrics.SELF_TEST.labels(self.name).set(1)
        logger.info("%s: self-test passed (max |Δ| %.3g) in %.3fs on %s", self.name, worst,
                    time.monotonic() - started, self.providers[0])  # fmt: skip
        return True

    def _observe_batch(self, rows: int, waits: list[float]) -> None:
        metrics.BATCH_ROWS.labels(self.name).observe(rows)
        for wait in waits:
            metrics.QUEUE_WAIT.labels(self.name).observe(wait)

    # --- metadata --------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        return [t.to_json() for t in self.artifact.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [t.to_json() for t in self.artifact.outputs]

    # --- inference -------------------------------------------------------------------------
    def count(self, outcome: Outcome) -> None:
        metrics.REQUESTS.labels(self.name, outcome.value).inc()

    def check_room(self) -> None:
        """Refuse (``OverloadedError``) when the batch queue is full, before any reading."""
        if self.batcher is not None:
            self.batcher.check_room()

    async def infer(self, request: InferRequest) -> list[tuple[str, str, np.ndarray]]:
        """The answer to ``request``: (name, v2 datatype, array) per output, in the order asked.

        Both protocols come here: REST from ``runtime/rest.py``, gRPC through kserve's
        ``predict``. The outcome is counted here, once, by ``errors.refusal``."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.request_timeout):
                outputs = await self._infer(request)
        except TimeoutError as err:
            self.count(Outcome.TIMEOUT)
            raise DeadlineExceededError(
                f"not answered within the request deadline of {self.request_timeout:g}s"
            ) from err
        except Exception as err:
            self.count(refusal(err).outcome)
            raise
        self.count(Outcome.SUCCESS)
        metrics.LATENCY.labels(self.name).observe(time.monotonic() - started)
        return outputs

    async def _infer(self, request: InferRequest) -> list[tuple[str, str, np.ndarray]]:
        if not self.ready:
            raise NotReadyError(self.name, self.not_ready_reason)
        limits = replace(self.limits, max_batch=min(self.limits.max_batch, self.max_batch_size))
        arrays = decode_request(request.inputs, self.artifact.inputs, limits, self.image_input)
        received = dict(arrays)  # as they came, before images are decoded: what a shadow mirrors
        if self.image_input is not None and arrays[self.image_input].dtype == np.object_:
            # Off the event loop: health checks and other requests go on while images decode.
            arrays[self.image_input] = await asyncio.get_running_loop().run_in_executor(
                self._decoder, self._decode_images, arrays[self.image_input]
            )
        assert self.batcher is not None
        outputs = await self.batcher.infer(arrays)
        for name, array in arrays.items():  # what was served, not what was refused
            self.stats.observe(name, array)
        if self.drift is not None:
            self.drift.observe(arrays, outputs[0] if outputs else None)
        if self._classes and outputs and outputs[0].ndim == 2:
            top, counts = np.unique(outputs[0].argmax(axis=1), return_counts=True)
            for index, count in zip(top.tolist(), counts.tolist(), strict=True):
                self._classes[index].inc(count)
        named = dict(zip(self._output_names, outputs, strict=True))
        if self.shadow is not None:  # the graph's own outputs: post-processing follows from them
            self.shadow.offer(received, dict(named))
        named.update(self._postprocess(named))
        wanted = request.outputs or list(named)
        unknown = [w for w in wanted if w not in named]
        if unknown:
            raise InvalidRequestError(
                f"unknown output '{unknown[0]}'; the model returns {', '.join(named)}"
            )
        return [(name, protocol.datatype(named[name]), named[name]) for name in wanted]

    async def predict(
        self, payload: KserveRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        """kserve's entry point, which gRPC requests take (REST has ``runtime/rest.py``)."""
        if not isinstance(payload, KserveRequest):
            raise InvalidRequestError("this runtime speaks the Open Inference Protocol v2 only")
        request = InferRequest(
            id=payload.id or "",
            inputs=[_request_tensor(item) for item in payload.inputs],
            outputs=[o.name for o in payload.request_outputs or []] or None,
            binary={},
            binary_default=bool(payload.use_binary_outputs),
        )
        try:
            outputs = await self.infer(request)
        except Exception as err:  # with the reason, not kserve's bare "Internal server error"
            raise GrpcException(str(err), refusal(err).grpc) from err
        infer_outputs = []
        for name, datatype, array in outputs:
            out = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
            # Raw contents always: typed contents would turn every element into a Python
            # object on the way into protobuf.
            out.set_data_from_numpy(array, binary_data=True)
            infer_outputs.append(out)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=infer_outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )

    def _decode_images(self, blobs: np.ndarray) -> np.ndarray:
        pre = self.artifact.preprocessing or {}
        layout = pre.get("channelLayout", "NCHW")
        shape = self.artifact.inputs[0].shape
        channels, height, width = (
            (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
        )
        size = pre.get("resize") or {}
        try:
            return imaging.decode_images(
                blobs,
                channels,
                size.get("height", height),
                size.get("width", width),
                layout,
                self.limits.max_image_pixels,
            )
        except imaging.ImageError as err:
            raise InvalidRequestError(f"input '{self.image_input}': {err}") from err

    def _postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        post = self.artifact.postprocessing
        first = outputs[self._output_names[0]]
        if post.get("type") == "classification" and first.ndim == 2:
            k = int((post.get("classification") or {}).get("topK", 5))
            labels, scores = postprocessing.top_k(first, k, self.labels)
            return {"labels": labels, "scores": scores}
        if post.get("type") == "detection" and first.ndim == 3 and first.shape[-1] == 6:
            options = post.get("detection") or {}
            boxes, counts = postprocessing.nms(
                first,
                float(options.get("iouThreshold", 0.45)),
                float(options.get("scoreThreshold", 0.25)),
                int(options.get("maxDetections", 100)),
            )
            return {"detections": boxes, "num_detections": counts}
        return {}
