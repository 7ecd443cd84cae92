"""FP16 and INT8 versions of the exported graph, through onnxruntime's own tools.

- fp16: every float32 initializer and op to float16, graph inputs and outputs kept float32 so
  clients send and receive the same tensors as before (``keep_io_types``).
- int8 dynamic: weights quantized ahead of time, activations at run time. For Linear-heavy and
  transformer-like models on CPU.
- int8 static: QDQ format with activation ranges calibrated on representative samples. For CNNs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from modeldeploy.api.optimization import Precision, Quantization, QuantizationMode
from modeldeploy.staging.errors import OptimizationError
from modeldeploy.staging.samples import Batch, split


def to_fp16(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(model, str(target))
    except Exception as err:
        raise OptimizationError(f"fp16 conversion failed: {err}") from err


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over our sample batches."""

    def __init__(self, batches: list[Batch]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> Batch | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax calibration
        pass


def to_int8(source: Path, target: Path, options: Quantization, calibration: Batch | None) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            if options.mode == QuantizationMode.DYNAMIC:
                quantize_dynamic(
                    str(prepared),
                    str(target),
                    weight_type=QuantType.QInt8,
                    per_channel=options.per_channel,
                )
            else:
                if calibration is None:
                    raise OptimizationError("static quantization needs calibration samples")
                quantize_static(
                    str(prepared),
                    str(target),
                    _Reader(split(calibration, 16)),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=options.per_channel,
                )
        except OptimizationError:
            raise
        except Exception as err:
            raise OptimizationError(f"int8 {options.mode} quantization failed: {err}") from err


def optimize(
    source: Path,
    target: Path,
    precision: Precision,
    quantization: Quantization | None,
    calibration: Batch | None,
) -> None:
    """Write the graph for ``precision`` at ``target`` (a copy for fp32)."""
    if precision == Precision.FP16:
        to_fp16(source, target)
    elif precision == Precision.INT8:
        if quantization is None:
            raise OptimizationError("precision int8 needs quantization options")
        to_int8(source, target, quantization, calibration)
    else:
        target.write_bytes(source.read_bytes())
