"""``spec.optimization``: how the staging Job turns the source into the served ONNX graph, and how
close the result must stay to the source model before it may serve."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from modeldeploy.api.base import ApiModel, CelRule, nested
from modeldeploy.api.model import MODEL_URI, no_dot_dot


class Precision(StrEnum):
    """Numeric precision of the served graph."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class QuantizationMode(StrEnum):
    """INT8 quantization method."""

    DYNAMIC = "dynamic"
    STATIC = "static"


class Calibration(ApiModel):
    """Representative inputs for static quantization."""

    uri: Annotated[str, Field(pattern=MODEL_URI, max_length=2048)]
    """A .npz file of input arrays keyed by input name (same schemes as the model uri)."""

    samples: Annotated[int, Field(ge=1, le=100_000)] = 256
    """How many samples from the file to calibrate on."""

    cel_rules = (no_dot_dot("uri", "uri"),)


class Quantization(ApiModel):
    """INT8 quantization through onnxruntime.quantization."""

    mode: QuantizationMode = QuantizationMode.DYNAMIC
    """dynamic (weights only; good for Linear and transformer-like models) or static (QDQ with
    calibrated activations; good for CNNs)."""

    calibration: Calibration | None = None
    """Calibration data; required for static quantization."""

    per_channel: bool = False
    """Quantize weights per output channel (more accurate, slightly larger)."""

    cel_rules = (
        CelRule(
            cel="self.mode != 'static' || has(self.calibration)",
            message="static quantization needs a calibration source",
            field_path=".calibration",
            reason="FieldValueRequired",
            holds=lambda q: q.mode != QuantizationMode.STATIC or q.calibration is not None,
        ),
    )


class Parity(ApiModel):
    """How far the served graph may drift from the source model before staging fails."""

    atol: Annotated[float, Field(ge=0, le=1000)] = 1e-3
    """Largest allowed absolute difference of any output element."""

    rtol: Annotated[float, Field(ge=0, le=1000)] = 1e-3
    """Largest allowed relative difference (|a-b| <= atol + rtol*|b|)."""

    samples: Annotated[int, Field(ge=1, le=10_000)] = 32
    """Seeded random samples compared, besides any calibration samples."""

    min_top1_agreement: Annotated[float, Field(ge=0, le=1)] = 0.99
    """Smallest share of samples whose arg-max class must agree (classification models)."""

    golden_samples: Annotated[int, Field(ge=0, le=64)] = 4
    """Input/output pairs stored with the artifact for the runtime self-test and canary probes."""


class OptimizationSpec(ApiModel):
    """Export and optimization options."""

    precision: Precision = Precision.FP32
    """fp32, fp16 (float32 graph inputs and outputs kept by default) or int8 (needs quantization)."""

    quantization: Quantization | None = None
    """INT8 quantization options; required when precision is int8 and only allowed then."""

    opset: Annotated[int, Field(ge=13, le=23)] = 17
    """ONNX opset the graph is exported with."""

    parity: Parity = nested(Parity)
    """Numerical parity check against the source model."""

    cel_rules = (
        CelRule(
            cel="self.precision != 'int8' || has(self.quantization)",
            message="precision int8 needs quantization options",
            field_path=".quantization",
            reason="FieldValueRequired",
            holds=lambda o: o.precision != Precision.INT8 or o.quantization is not None,
        ),
        CelRule(
            cel="!has(self.quantization) || self.precision == 'int8'",
            message="quantization is only used with precision int8",
            field_path=".quantization",
            holds=lambda o: o.quantization is None or o.precision == Precision.INT8,
        ),
    )
