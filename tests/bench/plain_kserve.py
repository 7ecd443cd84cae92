"""Baseline (a) for the runtime benchmark: the plain way to serve ONNX on the kserve SDK, a
``kserve.Model`` that calls onnxruntime once per request, without batching.

    python -m tests.bench.plain_kserve MODEL_DIR HTTP_PORT GRPC_PORT
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class PlainOnnx(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path

    def load(self) -> bool:
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers: Any = None) -> InferResponse:
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        outputs = []
        for meta, value in zip(
            self.session.get_outputs(), self.session.run(None, feeds), strict=True
        ):
            out = InferOutput(meta.name, list(value.shape), "FP32")
            out.set_data_from_numpy(value, binary_data=payload.use_binary_outputs)
            outputs.append(out)
        return InferResponse(
            payload.id or "", self.name, outputs, use_binary_outputs=payload.use_binary_outputs
        )


if __name__ == "__main__":
    model_dir, http_port, grpc_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    model = PlainOnnx(model_dir.name, model_dir / "1" / "model.onnx")
    model.load()
    ModelServer(http_port=http_port, grpc_port=grpc_port, workers=1).start([model])
