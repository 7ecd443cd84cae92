"""Triton Inference Server for the runtime benchmark, from the ``nvidia-pytriton`` wheel.

That wheel ships ``tritonserver`` with the Python backend only, no ONNX Runtime backend. So the
model here is a Python-backend model that runs the same ``model.onnx`` with onnxruntime, and
Triton does the dynamic batching. Its Python stub fails under Python 3.11 here
(``_recursion_count``), so the wheel and onnxruntime live in a virtual environment
under ``.cache/bench/triton-venv``, created on first use, with another Python (``STUB``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from modeldeploy.testing.controlplane import REPO_ROOT, free_port

VENV = REPO_ROOT / ".cache" / "bench" / "triton-venv"
STUB = os.environ.get("TRITON_PYTHON", "3.12")
"""Python for Triton's Python backend: not 3.11 (its stub fails with ``_recursion_count`` here),
and one that nvidia-pytriton's ``numpy<2`` pin has wheels for (3.13 has none: numpy builds from
source)."""

MODEL_PY = """
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import os
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        batch = np.concatenate([pb_utils.get_input_tensor_by_name(r, "image").as_numpy() for r in requests])
        out = self.session.run(None, {"image": batch})[0]
        responses, offset = [], 0
        for r in requests:
            n = pb_utils.get_input_tensor_by_name(r, "image").as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("output", out[offset:offset + n])]))
            offset += n
        return responses
"""

CONFIG = """name: "resnet18"
backend: "python"
max_batch_size: 32
input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ 1000 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


class UnavailableError(RuntimeError):
    """Triton cannot be set up on this machine; the message says why."""


def _python() -> str:
    # pyenv's shim answers to the name even where the version is not selected, so look behind it.
    found = next(
        iter(sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{STUB}*/bin/python{STUB}")))),
        None,
    )
    found = found or shutil.which(f"python{STUB}")
    if not found:
        raise UnavailableError(f"no Python {STUB} interpreter for the pytriton Python stub")
    return found


def _venv() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / ".complete").exists():
        subprocess.run([_python(), "-m", "venv", "--clear", str(VENV)], check=True)
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "nvidia-pytriton", "onnxruntime", "numpy"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise UnavailableError(f"pip install nvidia-pytriton failed: {result.stderr[-500:]}")
        (VENV / ".complete").touch()
    return python


def server(model_dir: Path, workdir: Path) -> tuple[list[str], int, dict[str, Any]]:
    """Command, gRPC port and environment that start Triton on ``model_dir``'s model.onnx."""
    python = _venv()
    site = Path(
        subprocess.run([str(python), "-c", "import pytriton, os; print(os.path.dirname(pytriton.__file__))"],
                       capture_output=True, text=True, check=True).stdout.strip()
    )  # fmt: skip
    triton = site / "tritonserver"
    repo = workdir / "repository"
    version = repo / "resnet18" / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_dir / "1" / "model.onnx", version / "model.onnx")
    (version / "model.py").write_text(MODEL_PY)
    (repo / "resnet18" / "config.pbtxt").write_text(CONFIG)
    # The Python backend looks for its stub next to itself: a backend folder of our own holds
    # the shipped backend plus the stub for the venv's Python.
    backends = workdir / "backends"
    shutil.copytree(triton / "backends", backends, dirs_exist_ok=True)
    shutil.copy(
        triton / "python_backend_stubs" / STUB / "triton_python_backend_stub", backends / "python"
    )
    libpython = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    grpc = free_port()
    args = [
        str(triton / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        f"--http-port={free_port()}",
        f"--grpc-port={grpc}",
        "--allow-metrics=false",
        "--log-verbose=0",
    ]
    env = {
        "LD_LIBRARY_PATH": ":".join(
            [
                str(site.parent / "nvidia_pytriton.libs"),
                libpython,
                os.environ.get("LD_LIBRARY_PATH", ""),
            ]
        ),
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "PYTHONPATH": "",
    }
    return args, grpc, env
