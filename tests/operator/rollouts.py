"""What the canary tests share: specs, reading the rollout's progress, and the CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from tests.operator.conftest import Kube, digits_spec
from tests.support.load import Load
from tests.support.processes import LocalStack

ENV_FAST = {"MODELDEPLOY_METRICS_MIN_WINDOW_SECONDS": "5", "MODELDEPLOY_RESYNC_SECONDS": "5"}


def canary_spec(steps: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    return {
        "strategy": "canary",
        "steps": steps,
        "analysis": {"interval": "1s", **analysis},
        "progressDeadline": "3m",
    }


def knative(rollout: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return digits_spec(serving={"deploymentMode": "Knative"}, rollout=rollout, **sections)


def status(kube: Kube, name: str = "digits") -> dict[str, Any]:
    found: dict[str, Any] = (kube.get(name) or {}).get("status") or {}
    return found


def phase(kube: Kube, name: str = "digits") -> str:
    return str((status(kube, name).get("rollout") or {}).get("phase", ""))


def deploy_stable(kube: Kube, spec: dict[str, Any]) -> tuple[dict[str, Any], Load]:
    kube.create("digits", spec)
    kube.wait_condition("digits", "Ready", "True", timeout=180)
    first = status(kube)
    load = Load(first["url"])
    return first, load


def walk(kube: Kube, until: set[str], timeout: float = 240) -> list[tuple[str, int, int]]:
    """(phase, step, canary %) each time they change, until the phase is one of ``until``."""
    seen: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status(kube)
        rollout = s.get("rollout") or {}
        now = (
            rollout.get("phase", ""),
            int(rollout.get("step", 0)),
            (s.get("traffic") or {}).get("canary", 0),
        )
        if not seen or seen[-1] != now:
            seen.append(now)
        if now[0] in until:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"rollout did not reach {until}: {seen}\n{kube._dump()}")


def cli(stack: LocalStack, *args: str) -> str:
    """``modeldeploy ARGS`` as a person at a terminal would run it."""
    result = subprocess.run([sys.executable, "-m", "modeldeploy", *args,
                             "--kubeconfig", str(stack.kubeconfig)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout
