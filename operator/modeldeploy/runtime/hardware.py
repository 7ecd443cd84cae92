"""Execution providers and thread counts for the machine the pod actually got.

A container sees the host's cores in ``os.cpu_count()``; sizing ONNX Runtime's thread pools to
that on a 64-core node with a 2-CPU limit makes threads fight over 2 CPUs. The limit is read
from the cgroup instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def cpu_limit(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this container may use: the cgroup v2 or v1 CFS quota, else the visible cores."""
    visible = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, min(visible, math.ceil(int(quota) / int(period))))
        return visible
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return max(1, min(visible, math.ceil(quota_us / period_us)))
    except (OSError, ValueError):
        pass
    return visible


def gpu_visible() -> bool:
    """A GPU the container was given: NVIDIA device nodes, not hidden by CUDA_VISIBLE_DEVICES."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1", "none"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def execution_providers(available: list[str], gpu: bool) -> list[str]:
    """TensorRT then CUDA when a GPU is visible and the build has them; CPU always last."""
    chosen = []
    if gpu:
        chosen += [
            p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available
        ]
    return [*chosen, "CPUExecutionProvider"]
