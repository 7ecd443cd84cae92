"""Triton Inference Server for the runtime benchmark: ``tests.support.triton`` (see there
for what is real and what stands in) serving the benchmark's staged ResNet-18, with the dynamic
batching its ``config.pbtxt`` asks for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import triton
from tests.support.controlplane import free_port

UnavailableError = triton.UnavailableError


def server(model_dir: Path, workdir: Path) -> tuple[list[str], int, int, dict[str, Any]]:
    """Command, HTTP and gRPC ports and environment that start Triton on ``model_dir``'s
    model.onnx."""
    ports = triton.Ports(http=free_port(), grpc=free_port(), metrics=free_port())
    repository = triton.model_repository(model_dir, workdir)
    args, env = triton.command(repository, workdir, ports)
    return args, ports.http, ports.grpc, env
