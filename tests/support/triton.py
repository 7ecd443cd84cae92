"""Triton Inference Server on this machine, from the ``nvidia-pytriton`` wheel.

Test support, for the local executor (``kserve-tritonserver`` InferenceServices) and the runtime
benchmark. What is real: ``tritonserver`` itself, its HTTP and gRPC endpoints, its scheduling
and dynamic batching, and its Prometheus metrics. What stands in: the wheel ships only Triton's
Python backend, not its ONNX Runtime backend, so :func:`model_repository` turns a staged model
folder (``config.pbtxt`` for ``onnxruntime_onnx`` and ``1/model.onnx``) into a Python-backend
model that runs the same ``model.onnx`` with onnxruntime, batch for batch. As the ONNX Runtime
backend does, a batch that onnxruntime fails fails every request in it, and Triton counts those
in ``nv_inference_request_failure{reason="BACKEND"}``.

The Python backend's stub fails under Python 3.11 here (``_recursion_count``), so the wheel,
onnxruntime and numpy live in a virtual environment of another Python (``TRITON_PYTHON``,
default 3.12) under ``.cache/triton-venv``, created on first use (about 30 s).
"""

from __future__ import annotations

import fcntl
import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.controlplane import REPO_ROOT

VENV = REPO_ROOT / ".cache" / "triton-venv"
STUB = os.environ.get("TRITON_PYTHON", "3.12")
"""Python for Triton's Python backend: not 3.11 (its stub fails with ``_recursion_count`` here),
and one that nvidia-pytriton's ``numpy<2`` pin has wheels for (3.13 has none)."""

MODEL_PY = '''
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """The staged model.onnx, as Triton's ONNX Runtime backend would run it."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = {
            name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            for name in self.inputs
        }
        rows = [len(a) for a in arrays[self.inputs[0]]]
        # A failure raises: Triton fails every request of the batch and counts each one.
        results = self.session.run(self.outputs, {n: np.concatenate(a) for n, a in arrays.items()})
        responses, offset = [], 0
        for n in rows:
            tensors = [pb_utils.Tensor(name, value[offset:offset + n])
                       for name, value in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(tensors))
            offset += n
        return responses
'''


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


def _installer(python: Path) -> list[str]:
    """``uv pip install`` into ``python``'s venv when ours has uv (``make install`` puts it there:
    from its cache in seconds, where pip took 30 s of CPU per clone), else that venv's pip."""
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        return [str(uv), "pip", "install", "--python", str(python), "--compile-bytecode"]
    return [str(python), "-m", "pip", "install"]


def venv() -> Path:
    """The virtual environment's python, created on first use."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    # Held while creating: test workers (pytest-xdist) may ask at once, and one must not
    # clear the folder another is installing into.
    with open(VENV.parent / "triton-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / ".complete").exists():
            subprocess.run([_python(), "-m", "venv", "--clear", str(VENV)], check=True)
            result = subprocess.run(
                [*_installer(python), "-q", "nvidia-pytriton", "onnxruntime", "numpy"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise UnavailableError(
                    f"pip install nvidia-pytriton failed: {result.stderr[-500:]}"
                )
            (VENV / ".complete").touch()
    return python


def model_repository(model_dir: Path, into: Path) -> Path:
    """A Triton model repository holding ``model_dir`` (a staged ``<name>/`` folder) as a
    Python-backend model; returns the repository."""
    repository = into / "repository"
    target = repository / model_dir.name
    shutil.rmtree(repository, ignore_errors=True)
    (target / "1").mkdir(parents=True)
    shutil.copy(model_dir / "1" / "model.onnx", target / "1" / "model.onnx")
    (target / "1" / "model.py").write_text(MODEL_PY)
    config = (model_dir / "config.pbtxt").read_text()
    config = re.sub(r'^(platform|backend): "[^"]*"\n', "", config, flags=re.MULTILINE)
    (target / "config.pbtxt").write_text('backend: "python"\n' + config)
    return repository


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


def command(repository: Path, workdir: Path, ports: Ports) -> tuple[list[str], dict[str, str]]:
    """The ``tritonserver`` command line and environment that serve ``repository``."""
    python = venv()
    site = Path(
        subprocess.run(
            [str(python), "-c", "import pytriton, os; print(os.path.dirname(pytriton.__file__))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    triton = site / "tritonserver"
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
    args = [
        str(triton / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
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
    return args, env


if __name__ == "__main__":  # python -m tests.support.triton: create the venv now
    print(venv(), file=sys.stderr)
