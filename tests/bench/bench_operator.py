"""``make bench`` for the operator: how fast ModelDeployments become InferenceServices, and how
much memory the operator needs for a thousand of them.

The operator runs as a real process (``modeldeploy operator``) against the real test control
plane. The local executor runs with ``--instant``: it answers each staging Job at once with a
made-up successful summary, so the figures measure the operator and the API server, not
PyTorch. Figures only; nothing here asserts a speed.

1. latency: 100 ModelDeployments created one after another (0.1 s apart); for each, the time
   from its create call returning to the InferenceService appearing (ADDED on a watch).
2. scale: 1 000 ModelDeployments created by 16 threads; the time from the first create until
   every one reports Deployed=True, and the operator's peak RSS (VmHWM) afterwards.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from modeldeploy.testing import Assets, ControlPlane
from modeldeploy.testing.controlplane import REPO_ROOT
from modeldeploy.testing.processes import LocalStack

MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
LATENCY_N = int(os.environ.get("BENCH_LATENCY_N", "100"))
SCALE_N = int(os.environ.get("BENCH_SCALE_N", "1000"))


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())[
        "spec"
    ]
    return spec


def _body(name: str) -> dict[str, Any]:
    return {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name}, "spec": _spec()}  # fmt: skip


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bench_latency(api: client.ApiClient, namespace: str) -> list[float]:
    custom = client.CustomObjectsApi(api)
    created: dict[str, float] = {}
    appeared: dict[str, float] = {}
    done = threading.Event()

    def watch_isvcs() -> None:
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object, *ISVC[:2], namespace, ISVC[2], timeout_seconds=300
        )
        for event in stream:
            if event["type"] == "ADDED":
                appeared.setdefault(event["object"]["metadata"]["name"], time.monotonic())
            if len(appeared) >= LATENCY_N:
                done.set()
                return

    watcher = threading.Thread(target=watch_isvcs, daemon=True)
    watcher.start()
    time.sleep(1)
    for i in range(LATENCY_N):
        name = f"lat-{i:03d}"
        custom.create_namespaced_custom_object(*MD[:2], namespace, MD[2], _body(name))
        created[name] = time.monotonic()
        time.sleep(0.1)
    done.wait(120)
    return [appeared[n] - created[n] for n in created if n in appeared]


def _deployed(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Deployed" and c["status"] == "True" for c in conditions)


def bench_scale(api: client.ApiClient, namespace: str) -> tuple[float, int]:
    """Counts Deployed=True from a watch, re-listing whenever the API server ends the stream
    (it closes watchers that fall behind). Polling a thousand objects would load the API server
    more than the operator does."""
    custom = client.CustomObjectsApi(api)
    deployed: set[str] = set()
    all_done = threading.Event()

    def follow() -> None:
        while not all_done.is_set():
            listed = custom.list_namespaced_custom_object(*MD[:2], namespace, MD[2])
            deployed.update(i["metadata"]["name"] for i in listed["items"] if _deployed(i))
            version = listed["metadata"]["resourceVersion"]
            stream = watch.Watch().stream(
                custom.list_namespaced_custom_object, *MD[:2], namespace, MD[2],
                resource_version=version, timeout_seconds=120,
            )  # fmt: skip
            try:
                for event in stream:
                    if _deployed(event["object"]):
                        deployed.add(event["object"]["metadata"]["name"])
                    if len(deployed) >= SCALE_N:
                        all_done.set()
                        return
            except client.ApiException as err:  # 410 Gone: list again
                if err.status != 410:
                    raise
            if len(deployed) >= SCALE_N:
                all_done.set()

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: custom.create_namespaced_custom_object(
                    *MD[:2], namespace, MD[2], _body(f"scale-{i:04d}")
                ),
                range(SCALE_N),
            )
        )
    print(f"  created {SCALE_N} ModelDeployments in {time.monotonic() - start:.1f} s")
    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    all_done.wait(600)
    return time.monotonic() - start, len(deployed)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    extra_env = dict(e.split("=", 1) for e in os.environ.get("BENCH_OPERATOR_ENV", "").split() if e)
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        work = Path(tmp)
        plane = ControlPlane(work / "plane", Assets.provide())
        plane.start()
        stack = LocalStack(plane.kubeconfig, work / "processes", work / "pvc")
        try:
            runtime = REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"
            plane.kubectl("apply", "--server-side", "-f", str(runtime))
            for ns in ("latency", "scale"):
                plane.kubectl("create", "namespace", ns)
            executor = stack.executor(instant=True)
            operator = stack.operator("--artifact-store", "pvc://artifacts/store", env=extra_env)
            api = config.new_client_from_config(config_file=str(plane.kubeconfig))
            api.configuration.connection_pool_maxsize = 32

            latencies = bench_latency(api, "latency")
            after_latency = _peak_rss_mb(operator.process.pid)
            cpu_before = {
                "operator": _cpu_seconds(operator.process.pid),
                "executor": _cpu_seconds(executor.process.pid),
                **{n: _cpu_seconds(p.pid) for n, p in plane.processes.items()},
            }
            total, deployed = bench_scale(api, "scale")
            peak = _peak_rss_mb(operator.process.pid)
            cpu = {
                "operator": _cpu_seconds(operator.process.pid),
                "executor": _cpu_seconds(executor.process.pid),
                **{n: _cpu_seconds(p.pid) for n, p in plane.processes.items()},
            }
        finally:
            stack.stop()
            plane.stop()
    used = ", ".join(f"{n} {cpu[n] - cpu_before[n]:.0f} s" for n in cpu)
    print(f"machine: {os.cpu_count()} CPUs, shared by every process below and this benchmark")
    print("benchmark                                                   value")
    print(
        f"apply → InferenceService (n={len(latencies)} of {LATENCY_N})             "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {_percentile(latencies, 95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    print(
        f"{SCALE_N} ModelDeployments → all Deployed                    {total:.1f} s ({deployed} Deployed)"
    )
    print(f"CPU time during those {total:.0f} s                             {used}")
    print(
        f"operator peak RSS (VmHWM) after the {LATENCY_N} / after the {SCALE_N}       {after_latency:.0f} MB / {peak:.0f} MB"
    )


if __name__ == "__main__":
    main()
