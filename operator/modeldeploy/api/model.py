"""``spec.model``: where the trained model is, how it was saved, and how it is fed and read.

The staging Job reads this to load and export the model; the runtime reads the pre- and
post-processing (copied into the artifact manifest) to accept images and return labels.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from modeldeploy.api.base import DNS_SUBDOMAIN, ApiModel, CelRule, nested

TENSOR_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,62}$"
ENTRYPOINT = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
MODEL_URI = r"^(s3://[^/]+/.+|gs://[^/]+/.+|https://[^/]+/.+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+|file:///.+)$"


class ModelFormat(StrEnum):
    """How the source file was saved."""

    PYTORCH = "pytorch"
    TORCHSCRIPT = "torchscript"
    STATE_DICT = "state_dict"
    ONNX = "onnx"


class DataType(StrEnum):
    """Tensor element types, spelled as the Open Inference Protocol v2 spells them."""

    FP32 = "FP32"
    FP16 = "FP16"
    INT64 = "INT64"
    INT32 = "INT32"
    INT8 = "INT8"
    UINT8 = "UINT8"
    BOOL = "BOOL"


class TensorSpec(ApiModel):
    """One model input, described per sample: the batch dimension is added by the server."""

    name: Annotated[str, Field(pattern=TENSOR_NAME)]
    """Input name, as clients send it in the v2 request and as the exported ONNX graph names it."""

    shape: Annotated[
        list[Annotated[int, Field(ge=-1, le=1_000_000)]], Field(min_length=1, max_length=8)
    ]
    """Per-sample shape without the batch dimension, e.g. [3, 224, 224]; -1 marks a dynamic
    dimension such as a sequence length."""

    dtype: DataType = DataType.FP32
    """Element type of the input tensor."""

    cel_rules = (
        CelRule(
            cel="self.shape.all(d, d != 0)",
            message="dimensions must be positive, or -1 for a dynamic dimension",
            field_path=".shape",
            holds=lambda t: 0 not in t.shape,
            locate=lambda t: [
                (f"shape[{i}]", "dimensions must be positive, or -1 for a dynamic dimension")
                for i, d in enumerate(t.shape)
                if d == 0
            ],
        ),
    )


class ChannelLayout(StrEnum):
    """Where the channel axis sits in an image tensor."""

    NCHW = "NCHW"
    NHWC = "NHWC"


class ImageSize(ApiModel):
    """A target image size in pixels."""

    height: Annotated[int, Field(ge=1, le=8192)]
    """Height in pixels."""

    width: Annotated[int, Field(ge=1, le=8192)]
    """Width in pixels."""


class Preprocessing(ApiModel):
    """Image pre-processing, baked into the exported graph (scale, mean, std) and applied by the
    runtime to encoded JPEG/PNG requests (decode, resize, layout)."""

    resize: ImageSize | None = None
    """Resize decoded images to this size before normalisation."""

    scale: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """Multiply pixel values by this first, e.g. 0.00392156862745098 (1/255) to map 0..255 to 0..1."""

    mean: Annotated[list[float], Field(min_length=1, max_length=4)] | None = None
    """Per-channel mean subtracted after scaling, e.g. [0.485, 0.456, 0.406]."""

    std: (
        Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1, max_length=4)] | None
    ) = None
    """Per-channel standard deviation divided by after subtracting the mean; every value > 0."""

    channel_layout: ChannelLayout = ChannelLayout.NCHW
    """Layout the model expects: NCHW (PyTorch) or NHWC."""

    cel_rules = (
        CelRule(
            cel="!has(self.mean) || !has(self.std) || size(self.mean) == size(self.std)",
            message="mean and std must have the same number of channels",
            field_path=".std",
            holds=lambda p: p.mean is None or p.std is None or len(p.mean) == len(p.std),
        ),
    )


class PostprocessingType(StrEnum):
    """What the model's output means."""

    NONE = "none"
    CLASSIFICATION = "classification"
    DETECTION = "detection"


DOT_DOT = r"(^|/)\.\.(/|$)"
"""A ``..`` path segment: ``pvc://claim/../other`` would leave the claim's folder."""


def no_dot_dot(field: str, alias: str, optional: bool = False) -> CelRule:
    """The rule that ``field`` (``alias`` in the CRD) has no ``..`` path segment."""
    check = f"!self.{alias}.matches('{DOT_DOT.replace(chr(92), chr(92) * 2)}')"
    return CelRule(
        cel=f"!has(self.{alias}) || {check}" if optional else check,
        message="must not contain a '..' path segment",
        field_path=f".{alias}",
        holds=lambda o: re.search(DOT_DOT, getattr(o, field) or "") is None,
    )


_LABELS_RULE = CelRule(
    cel="!(has(self.labels) && has(self.labelsUri))",
    message="set labels or labelsUri, not both",
    field_path=".labelsUri",
    holds=lambda c: c.labels is None or c.labels_uri is None,
)

Labels = Annotated[
    list[Annotated[str, Field(max_length=256)]], Field(min_length=1, max_length=100_000)
]
LabelsUri = Annotated[str, Field(pattern=MODEL_URI, max_length=2048)]


class ClassificationOptions(ApiModel):
    """Turn logits into class labels and scores."""

    labels: Labels | None = None
    """Class names in output order."""

    labels_uri: LabelsUri | None = None
    """A text file with one class name per line, fetched at staging time (same schemes as the model uri)."""

    top_k: Annotated[int, Field(ge=1, le=1000)] = 5
    """How many best classes to return per sample."""

    softmax: bool = True
    """Apply softmax to the logits (baked into the graph) so scores are probabilities."""

    cel_rules = (_LABELS_RULE, no_dot_dot("labels_uri", "labelsUri", optional=True))


class DetectionOptions(ApiModel):
    """Filter raw detector boxes with non-maximum suppression."""

    iou_threshold: Annotated[float, Field(ge=0, le=1)] = 0.45
    """Boxes overlapping a better box by more than this IoU are dropped."""

    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.25
    """Boxes scoring below this are dropped."""

    max_detections: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Most boxes returned per image."""

    labels: Labels | None = None
    """Class names in output order."""

    labels_uri: LabelsUri | None = None
    """A text file with one class name per line (same schemes as the model uri)."""

    cel_rules = (_LABELS_RULE, no_dot_dot("labels_uri", "labelsUri", optional=True))


class Postprocessing(ApiModel):
    """How the runtime turns raw outputs into an answer."""

    type: PostprocessingType = PostprocessingType.NONE
    """none returns raw tensors; classification adds top-k labels and scores; detection applies NMS."""

    classification: ClassificationOptions | None = None
    """Options when type is classification."""

    detection: DetectionOptions | None = None
    """Options when type is detection."""

    cel_rules = (
        CelRule(
            cel="!has(self.classification) || self.type == 'classification'",
            message="classification options need type: classification",
            field_path=".classification",
            holds=lambda p: p.classification is None or p.type == PostprocessingType.CLASSIFICATION,
        ),
        CelRule(
            cel="!has(self.detection) || self.type == 'detection'",
            message="detection options need type: detection",
            field_path=".detection",
            holds=lambda p: p.detection is None or p.type == PostprocessingType.DETECTION,
        ),
    )


CONFIG_MAP_KEY = r"^[-._a-zA-Z0-9]+$"
CODE_PATH = r"^[A-Za-z0-9_][-A-Za-z0-9_./]*$"


class CodeFile(ApiModel):
    """One ConfigMap key and the path it gets under the code folder, as a ConfigMap volume's
    items: how a package's modules (``pkg/__init__.py``, ``pkg/factory.py``) get their folders."""

    key: Annotated[str, Field(pattern=CONFIG_MAP_KEY, max_length=253)]
    """The ConfigMap's key (one file's content)."""

    path: Annotated[str, Field(pattern=CODE_PATH, max_length=253)]
    """Where that file goes, relative to the code folder, e.g. search_models/minilm.py."""

    cel_rules = (no_dot_dot("path", "path"),)


class CodeSource(ApiModel):
    """Python code the staging step needs: the module a state_dict entrypoint names, or the
    classes a pickled model refers to. Mounted read-only into the staging Job's build step (the
    one that runs the tenant's code) and put on sys.path."""

    config_map: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
    """A ConfigMap in the deployment's namespace; its keys are the files. Treat it as immutable:
    for new code make a new ConfigMap and point here at it, which stages the model again (an edit
    in place is only seen by the next staging)."""

    items: Annotated[list[CodeFile], Field(max_length=64)] | None = None
    """Where each key goes; left out, every key is a file at the top of the folder."""


class ModelSpec(ApiModel):
    """The trained model to serve."""

    uri: Annotated[str, Field(pattern=MODEL_URI, max_length=2048)]
    """Where the model file is: s3://bucket/key, gs://bucket/key, https://host/path,
    pvc://claim/path or file:///path (local use). Fetched with kserve-storage, so it means what it
    means to KServe."""

    format: ModelFormat
    """pytorch (a pickled nn.Module, loaded only inside the staging Job), torchscript, state_dict
    (weights for the module that entrypoint builds) or onnx."""

    entrypoint: Annotated[str, Field(pattern=ENTRYPOINT, max_length=256)] | None = None
    """For state_dict: the factory that builds the empty module, as pkg.module:factory."""

    entrypoint_args: (
        Annotated[
            dict[str, Any],
            Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}),
        ]
        | None
    ) = None
    """Keyword arguments passed to the entrypoint factory, e.g. {num_classes: 10}."""

    code: CodeSource | None = None
    """The code the entrypoint (or a pickled model's classes) comes from, from a ConfigMap; its
    module must still be allowed by the operator's entrypoint allow-list."""

    inputs: Annotated[
        list[TensorSpec],
        Field(
            min_length=1,
            max_length=16,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ]
    """The model's inputs, in the order the model's forward() takes them. Names are unique."""

    preprocessing: Preprocessing | None = None
    """Image pre-processing; leave out for models that take raw tensors."""

    postprocessing: Postprocessing = nested(Postprocessing)
    """Post-processing of the outputs."""

    cel_rules = (
        no_dot_dot("uri", "uri"),
        CelRule(
            cel="self.format != 'state_dict' || has(self.entrypoint)",
            message="format state_dict needs an entrypoint (pkg.module:factory)",
            field_path=".entrypoint",
            reason="FieldValueRequired",
            holds=lambda m: m.format != ModelFormat.STATE_DICT or m.entrypoint is not None,
        ),
        CelRule(
            cel="!has(self.entrypoint) || self.format == 'state_dict'",
            message="entrypoint is only used with format state_dict",
            field_path=".entrypoint",
            holds=lambda m: m.entrypoint is None or m.format == ModelFormat.STATE_DICT,
        ),
        CelRule(
            cel="!has(self.code) || self.format in ['state_dict', 'pytorch']",
            message="code is only used with format state_dict or pytorch",
            field_path=".code",
            holds=lambda m: (
                m.code is None or m.format in (ModelFormat.STATE_DICT, ModelFormat.PYTORCH)
            ),
        ),
    )
