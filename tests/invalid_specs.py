"""Invalid ModelDeployments and what must be said about each.

One table, two judges: ``tests/unit/test_validation.py`` checks that ``modeldeploy validate``
names ``path`` with ``message``; ``tests/cluster/test_crd_admission.py`` submits the same object to
a real kube-apiserver and checks that it is refused at ``api_field`` with ``api_message``. When a
CEL rule and its Python half drift apart, one of the two fails.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Doc = dict[str, Any]


def valid_doc(name: str = "classifier") -> Doc:
    """The smallest valid ModelDeployment; every case below breaks it in one place."""
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": "s3://models/classifier/model.pt",
                "format": "pytorch",
                "inputs": [{"name": "input", "shape": [3, 32, 32]}],
            }
        },
    }


@dataclass(frozen=True)
class InvalidCase:
    id: str
    mutate: Callable[[Doc], None]
    path: str
    message: str
    api_field: str  # the field of the API server's status cause; "" when only the message names it
    api_message: str

    def doc(self, name: str = "classifier") -> Doc:
        doc = copy.deepcopy(valid_doc(name))
        self.mutate(doc)
        return doc


def _spec(doc: Doc, *keys: str) -> Doc:
    """``doc["spec"][k1][k2]...``, creating mappings on the way."""
    node = doc["spec"]
    for key in keys:
        node = node.setdefault(key, {})
    return node


def _set(*keys: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        _spec(doc, *keys[:-1])[keys[-1]] = copy.deepcopy(value)

    return mutate


def _steps(*weights: int) -> Callable[[Doc], None]:
    return _set("rollout", "steps", value=[{"weight": w, "pause": "1m"} for w in weights])


def _merge(**parts: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        for dotted, value in parts.items():
            *keys, last = dotted.split("__")
            _spec(doc, *keys)[last] = copy.deepcopy(value)

    return mutate


def _rename(doc: Doc) -> None:
    doc["metadata"]["name"] = "resnet.v2"  # a valid object name, but not a valid KServe one


CASES: list[InvalidCase] = [
    InvalidCase(
        "format-enum",
        _set("model", "format", value="keras"),
        "spec.model.format",
        "Input should be 'pytorch', 'torchscript', 'state_dict' or 'onnx'",
        "spec.model.format",
        'Unsupported value: "keras"',
    ),
    InvalidCase(
        "dtype-enum",
        _set("model", "inputs", value=[{"name": "input", "shape": [4], "dtype": "float32"}]),
        "spec.model.inputs[0].dtype",
        "Input should be 'FP32'",
        "spec.model.inputs[0].dtype",
        'Unsupported value: "float32"',
    ),
    InvalidCase(
        "uri-scheme",
        _set("model", "uri", value="ftp://models/model.pt"),
        "spec.model.uri",
        "String should match pattern",
        "spec.model.uri",
        "should match",
    ),
    InvalidCase(
        "weight-out-of-range",
        _steps(0, 50),
        "spec.rollout.steps[0].weight",
        "Input should be greater than or equal to 1",
        "spec.rollout.steps[0].weight",
        "should be greater than or equal to 1",
    ),
    InvalidCase(
        "weight-over-100",
        _steps(50, 101),
        "spec.rollout.steps[1].weight",
        "Input should be less than or equal to 100",
        "spec.rollout.steps[1].weight",
        "should be less than or equal to 100",
    ),
    InvalidCase(
        "weights-not-increasing",
        _steps(10, 50, 30),
        "spec.rollout.steps[2].weight",
        "must be greater than 50",
        "spec.rollout.steps",
        "step weights must be strictly increasing",
    ),
    InvalidCase(
        "weights-repeated",
        _steps(20, 20),
        "spec.rollout.steps[1].weight",
        "must be greater than 20",
        "spec.rollout.steps",
        "step weights must be strictly increasing",
    ),
    InvalidCase(
        "pause-format",
        _set("rollout", "steps", value=[{"weight": 10, "pause": "5 minutes"}]),
        "spec.rollout.steps[0].pause",
        "String should match pattern",
        "spec.rollout.steps[0].pause",
        "should match",
    ),
    InvalidCase(
        "int8-needs-quantization",
        _set("optimization", "precision", value="int8"),
        "spec.optimization.quantization",
        "precision int8 needs quantization options",
        "spec.optimization.quantization",
        "precision int8 needs quantization options",
    ),
    InvalidCase(
        "static-needs-calibration",
        _merge(optimization__precision="int8", optimization__quantization={"mode": "static"}),
        "spec.optimization.quantization.calibration",
        "static quantization needs a calibration source",
        "spec.optimization.quantization.calibration",
        "static quantization needs a calibration source",
    ),
    InvalidCase(
        "quantization-without-int8",
        _merge(optimization__precision="fp16", optimization__quantization={"mode": "dynamic"}),
        "spec.optimization.quantization",
        "quantization is only used with precision int8",
        "spec.optimization.quantization",
        "quantization is only used with precision int8",
    ),
    InvalidCase(
        "gpu-type-needs-gpu",
        _set("serving", "resources", "gpuType", value="NVIDIA-A100-SXM4-80GB"),
        "spec.serving.resources.gpuType",
        "gpuType needs gpu > 0",
        "spec.serving.resources.gpuType",
        "gpuType needs gpu > 0",
    ),
    InvalidCase(
        "negative-gpu",
        _set("serving", "resources", "gpu", value=-1),
        "spec.serving.resources.gpu",
        "Input should be greater than or equal to 0",
        "spec.serving.resources.gpu",
        "should be greater than or equal to 0",
    ),
    InvalidCase(
        "cpu-quantity",
        _set("serving", "resources", "cpu", value="lots"),
        "spec.serving.resources.cpu",
        "'lots' is not a resource quantity",
        "spec.serving.resources.cpu",
        "should match",
    ),
    InvalidCase(
        "state-dict-needs-entrypoint",
        _set("model", "format", value="state_dict"),
        "spec.model.entrypoint",
        "format state_dict needs an entrypoint (pkg.module:factory)",
        "spec.model.entrypoint",
        "format state_dict needs an entrypoint",
    ),
    InvalidCase(
        "entrypoint-only-for-state-dict",
        _merge(model__format="torchscript", model__entrypoint="pkg.models:build"),
        "spec.model.entrypoint",
        "entrypoint is only used with format state_dict",
        "spec.model.entrypoint",
        "entrypoint is only used with format state_dict",
    ),
    InvalidCase(
        "code-only-for-python-formats",
        _merge(model__format="onnx", model__code={"configMap": "code"}),
        "spec.model.code",
        "code is only used with format state_dict or pytorch",
        "spec.model.code",
        "code is only used with format state_dict or pytorch",
    ),
    InvalidCase(
        "code-path-leaves-its-folder",
        _merge(
            model__code={"configMap": "code", "items": [{"key": "m.py", "path": "pkg/../../x.py"}]}
        ),
        "spec.model.code.items[0].path",
        "must not contain a '..' path segment",
        "spec.model.code.items[0].path",
        "must not contain a '..' path segment",
    ),
    InvalidCase(
        "reference-uri-leaves-its-claim",
        _set("monitoring", "reference", value={"uri": "pvc://data/../secrets/x.npz"}),
        "spec.monitoring.reference.uri",
        "must not contain a '..' path segment",
        "spec.monitoring.reference.uri",
        "must not contain a '..' path segment",
    ),
    InvalidCase(
        "reference-with-too-few-samples",
        _set("monitoring", "reference", value={"uri": "s3://data/x.npz", "samples": 3}),
        "spec.monitoring.reference.samples",
        "Input should be greater than or equal to 16",
        "spec.monitoring.reference.samples",
        "should be greater than or equal to 16",
    ),
    InvalidCase(
        "prediction-psi-needs-our-runtime",
        _merge(
            serving__runtime="kserve-tritonserver", rollout__analysis={"maxPredictionPsi": 0.25}
        ),
        "spec.rollout.analysis.maxPredictionPsi",
        "maxPredictionPsi needs the runtime that counts answers by class: modeldeploy-onnx",
        "spec.rollout.analysis.maxPredictionPsi",
        "maxPredictionPsi needs the runtime that counts answers by class",
    ),
    InvalidCase(
        "shadow-needs-our-runtime",
        _merge(serving__runtime="kserve-tritonserver", rollout__shadow={"percent": 10}),
        "spec.rollout.shadow",
        "a shadow phase needs the runtime that mirrors and compares: modeldeploy-onnx",
        "spec.rollout.shadow",
        "a shadow phase needs the runtime that mirrors and compares",
    ),
    InvalidCase(
        "scale-down-delay-too-long",
        _set("rollout", "scaleDownDelay", value="2h"),
        "spec.rollout.scaleDownDelay",
        "scaleDownDelay must be at most 1h",
        "spec.rollout.scaleDownDelay",
        "scaleDownDelay must be at most 1h",
    ),
    InvalidCase(
        "shadow-with-immediate",
        _merge(rollout__strategy="immediate", rollout__shadow={}),
        "spec.rollout.shadow",
        "a shadow phase needs strategy canary",
        "spec.rollout.shadow",
        "a shadow phase needs strategy canary",
    ),
    InvalidCase(
        "shadow-too-long",
        _set("rollout", "shadow", value={"duration": "25h"}),
        "spec.rollout.shadow.duration",
        "duration must be between 1s and 24h",
        "spec.rollout.shadow.duration",
        "duration must be between 1s and 24h",
    ),
    InvalidCase(
        "shadow-agreement-above-one",
        _set("rollout", "shadow", value={"minAgreement": 1.5}),
        "spec.rollout.shadow.minAgreement",
        "Input should be less than or equal to 1",
        "spec.rollout.shadow.minAgreement",
        "should be less than or equal to 1",
    ),
    InvalidCase(
        "min-over-max-replicas",
        _set("serving", "scaling", value={"minReplicas": 5, "maxReplicas": 2}),
        "spec.serving.scaling.minReplicas",
        "minReplicas must not be greater than maxReplicas",
        "spec.serving.scaling.minReplicas",
        "minReplicas must not be greater than maxReplicas",
    ),
    InvalidCase(
        "scale-to-zero-needs-knative",
        _set("serving", "scaling", value={"minReplicas": 0, "maxReplicas": 2}),
        "spec.serving.scaling.minReplicas",
        "minReplicas 0 (scale to zero) needs deploymentMode Knative",
        "spec.serving.scaling.minReplicas",
        "minReplicas 0 (scale to zero) needs deploymentMode Knative",
    ),
    InvalidCase(
        "concurrency-needs-knative",
        _set("serving", "scaling", value={"metric": "concurrency", "target": 8}),
        "spec.serving.scaling.metric",
        "metric concurrency or rps needs deploymentMode Knative",
        "spec.serving.scaling.metric",
        "metric concurrency or rps needs deploymentMode Knative",
    ),
    InvalidCase(
        "queue-delay-too-long",
        _set("serving", "batching", value={"maxQueueDelay": "2s"}),
        "spec.serving.batching.maxQueueDelay",
        "maxQueueDelay must be at most 1s",
        "spec.serving.batching.maxQueueDelay",
        "maxQueueDelay must be at most 1s",
    ),
    InvalidCase(
        "request-timeout-too-long",
        _set("serving", "batching", value={"requestTimeout": "11m"}),
        "spec.serving.batching.requestTimeout",
        "requestTimeout must be between 1ms and 10m",
        "spec.serving.batching.requestTimeout",
        "requestTimeout must be between 1ms and 10m",
    ),
    InvalidCase(
        "mean-std-lengths",
        _set("model", "preprocessing", value={"mean": [0.5, 0.5, 0.5], "std": [0.2]}),
        "spec.model.preprocessing.std",
        "mean and std must have the same number of channels",
        "spec.model.preprocessing.std",
        "mean and std must have the same number of channels",
    ),
    InvalidCase(
        "labels-and-labels-uri",
        _set(
            "model",
            "postprocessing",
            value={
                "type": "classification",
                "classification": {"labels": ["cat", "dog"], "labelsUri": "s3://m/labels.txt"},
            },
        ),
        "spec.model.postprocessing.classification.labelsUri",
        "set labels or labelsUri, not both",
        "spec.model.postprocessing.classification.labelsUri",
        "set labels or labelsUri, not both",
    ),
    InvalidCase(
        "classification-options-need-type",
        _set("model", "postprocessing", value={"classification": {"topK": 3}}),
        "spec.model.postprocessing.classification",
        "classification options need type: classification",
        "spec.model.postprocessing.classification",
        "classification options need type: classification",
    ),
    InvalidCase(
        "zero-dimension",
        _set("model", "inputs", value=[{"name": "input", "shape": [3, 0, 32]}]),
        "spec.model.inputs[0].shape[1]",
        "dimensions must be positive, or -1 for a dynamic dimension",
        "spec.model.inputs[0].shape",
        "dimensions must be positive, or -1 for a dynamic dimension",
    ),
    InvalidCase(
        "duplicate-input-names",
        _set("model", "inputs", value=[{"name": "x", "shape": [4]}, {"name": "x", "shape": [2]}]),
        "spec.model.inputs[1].name",
        "duplicate value 'x'",
        "spec.model.inputs[1]",
        "Duplicate value",
    ),
    InvalidCase(
        "missing-inputs",
        lambda doc: doc["spec"]["model"].pop("inputs"),
        "spec.model.inputs",
        "required field is missing",
        "spec.model.inputs",
        "Required value",
    ),
    InvalidCase(
        "unknown-field",
        _set("serving", "replicas", value=3),
        "spec.serving.replicas",
        "unknown field",
        "",  # strict decoding fails before validation, so the path is in the message
        'unknown field "spec.serving.replicas"',
    ),
    InvalidCase(
        "toleration-exists-with-value",
        _set(
            "serving",
            "resources",
            "tolerations",
            value=[{"key": "gpu", "operator": "Exists", "value": "yes"}],
        ),
        "spec.serving.resources.tolerations[0].value",
        "a toleration with operator Exists must not set a value",
        "spec.serving.resources.tolerations[0].value",
        "a toleration with operator Exists must not set a value",
    ),
    InvalidCase(
        "query-needs-threshold",
        _set("rollout", "analysis", "queries", value=[{"name": "drift", "query": "vector(1)"}]),
        "spec.rollout.analysis.queries[0].max",
        "a query needs a max or a min threshold",
        "spec.rollout.analysis.queries[0].max",
        "a query needs a max or a min threshold",
    ),
    InvalidCase(
        "latency-threshold-on-triton-standard",
        _merge(serving__runtime="kserve-tritonserver", rollout__analysis__maxP99LatencyMs=20),
        "spec.rollout.analysis",
        "maxP99LatencyMs and maxLatencyRatio need a latency histogram",
        "spec.rollout.analysis",
        "maxP99LatencyMs and maxLatencyRatio need a latency histogram",
    ),
    InvalidCase(
        "error-threshold-on-an-unmeasured-runtime",
        _merge(serving__runtime="kserve-sklearnserver", rollout__analysis__maxErrorRate=0.01),
        "spec.rollout.analysis.maxErrorRate",
        "maxErrorRate needs a runtime whose errors are measured",
        "spec.rollout.analysis.maxErrorRate",
        "maxErrorRate needs a runtime whose errors are measured",
    ),
    InvalidCase(
        "min-requests-zero",
        _set("rollout", "analysis", "minRequests", value=0),
        "spec.rollout.analysis.minRequests",
        "Input should be greater than or equal to 1",
        "spec.rollout.analysis.minRequests",
        "should be greater than or equal to 1",
    ),
    InvalidCase(
        "model-uri-leaves-its-claim",
        _set("model", "uri", value="pvc://models/../secrets/model.pt"),
        "spec.model.uri",
        "must not contain a '..' path segment",
        "spec.model.uri",
        "must not contain a '..' path segment",
    ),
    InvalidCase(
        "labels-uri-leaves-its-claim",
        _set(
            "model",
            "postprocessing",
            value={
                "type": "classification",
                "classification": {"labelsUri": "pvc://models/labels/.."},
            },
        ),
        "spec.model.postprocessing.classification.labelsUri",
        "must not contain a '..' path segment",
        "spec.model.postprocessing.classification.labelsUri",
        "must not contain a '..' path segment",
    ),
    InvalidCase(
        "bad-name",
        _rename,
        "metadata.name",
        "name must be a lowercase RFC 1035 label",
        "",  # a rule on the root object: the API server names no field
        "name must be a lowercase RFC 1035 label",
    ),
]
