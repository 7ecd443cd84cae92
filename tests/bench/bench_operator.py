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

For both, from the API server's audit log: the writes per ModelDeployment by client, verb and
resource, and the operator's reads (GETs and lists); and the CPU per ModelDeployment.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from tests.support import Assets, ControlPlane, finalizer_policy
from tests.support.controlplane import REPO_ROOT
from tests.support.executor import USER_AGENT as EXECUTOR_AGENT
from tests.support.processes import LocalStack, cpu_time

MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
LATENCY_N = int(os.environ.get("BENCH_LATENCY_N", "100"))
SCALE_N = int(os.environ.get("BENCH_SCALE_N", "1000"))
MODE = os.environ.get("BENCH_DEPLOYMENT_MODE", "Standard")
"""The example's deployment mode (Standard) or Knative, which has no HTTPRoute to write."""
FINALIZER_POLICY = os.environ.get("BENCH_FINALIZER_POLICY", "1") != "0"
"""Install the chart's MutatingAdmissionPolicy, as ``helm install`` does on Kubernetes >= 1.36,
so the API server adds the finalizer at create; 0 leaves the operator to add it (older
clusters)."""


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())[
        "spec"
    ]
    spec.setdefault("serving", {})["deploymentMode"] = MODE
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
    return _condition_true(obj, "Deployed")


def _condition_true(obj: dict[str, Any], kind: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def wait_all_ready(api: client.ApiClient, namespace: str, count: int, timeout: float) -> int:
    """Until every ModelDeployment in ``namespace`` is Ready=True (listed every 2 s); how many."""
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    while True:
        items = custom.list_namespaced_custom_object(*MD[:2], namespace, MD[2])["items"]
        ready = sum(_condition_true(i, "Ready") for i in items)
        if ready >= count or time.monotonic() > deadline:
            return ready
        time.sleep(2)


OPERATOR_AGENTS = ("modeldeploy-operator/",)
"""The operator's API client (its requests and its watches)."""


WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READ_VERBS = frozenset({"get", "list"})


def audited_writes(
    audit_log: Path,
    namespace: str,
    since: str = "",
    until: str = "~",
    verbs: frozenset[str] = WRITE_VERBS,
) -> list[dict[str, Any]]:
    """The writes (or other ``verbs``) in ``namespace`` the API server completed, from its audit
    log, between two RFC 3339 times (``stageTimestamp``; the strings sort as the times do)."""
    found = []
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if event.get("stage") != "ResponseComplete" or ref.get("namespace") != namespace:
            continue
        if event.get("verb") not in verbs:
            continue
        if since <= str(event.get("stageTimestamp", "")) <= until:
            found.append(event)
    return found


def client_of(event: dict[str, Any]) -> str:
    """operator, executor or other, by the caller's user agent."""
    agent = str(event.get("userAgent", ""))
    return ("operator" if agent.startswith(OPERATOR_AGENTS)
            else "executor" if agent.startswith(EXECUTOR_AGENT) else "other")  # fmt: skip


def resource_of(event: dict[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    return str(ref.get("resource", "")) + (
        f"/{ref['subresource']}" if ref.get("subresource") else ""
    )


def requests_by(
    audit_log: Path,
    namespace: str,
    verbs: frozenset[str] = WRITE_VERBS,
    only: str | None = None,
) -> Counter[tuple[str, str, str]]:
    """The requests of ``verbs`` in ``namespace`` by (client, verb, resource), from the API
    server's audit log, with the caller's user agent (``only`` that client). A request it refused
    or could not answer is counted too (it cost the API server a request, and the caller an
    answer to decode), under its resource with the status code, e.g.
    ``modeldeployments/status (409)`` or ``httproutes (404)``."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for event in audited_writes(audit_log, namespace, verbs=verbs):
        who = client_of(event)
        if only is not None and who != only:
            continue
        code = int((event.get("responseStatus") or {}).get("code") or 200)
        resource = resource_of(event) + (f" ({code})" if code >= 400 else "")
        counted[(who, str(event.get("verb")), resource)] += 1
    return counted


def request_table(
    counted: Counter[tuple[str, str, str]], n: int, what: str, clients: tuple[str, ...]
) -> list[str]:
    """``counted`` per ModelDeployment, with a total for each of ``clients``."""
    lines = [
        f"| client | verb | resource | {what} per ModelDeployment |",
        "| --- | --- | --- | --- |",
    ]
    for (who, verb, resource), count in sorted(counted.items()):
        lines.append(f"| {who} | {verb} | {resource} | {count / n:.2f} |")
    for who in clients:
        total = sum(c for (w, _, _), c in counted.items() if w == who)
        lines.append(f"| **{who}, all** | | | **{total / n:.2f}** |")
    return lines


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


def _cpu(operator: Any, executor: Any, plane: ControlPlane) -> dict[str, float]:
    return {
        "operator": cpu_time(operator.process.pid)[0],
        "executor": cpu_time(executor.process.pid)[0],
        **{n: cpu_time(p.pid)[0] for n, p in plane.processes.items()},
    }


def status_cost(body: dict[str, Any], n: int = 2000) -> tuple[float, float]:
    """Microseconds to parse a stored status into the typed model, and to dump it back
    (``wire()``): what the typed status costs each reconcile, beside its milliseconds."""
    from modeldeploy.api.status import ModelDeploymentStatus

    start = time.perf_counter()
    for _ in range(n):
        parsed = ModelDeploymentStatus.read(body)
    read = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        parsed.wire()
    return read, (time.perf_counter() - start) / n * 1e6


def main() -> None:
    extra_env = dict(e.split("=", 1) for e in os.environ.get("BENCH_OPERATOR_ENV", "").split() if e)
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        work = Path(tmp)
        plane = ControlPlane(work / "plane", Assets.provide(), audit=True)
        plane.start()
        stack = LocalStack(plane.kubeconfig, work / "processes", work / "pvc")
        try:
            runtime = REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"
            plane.kubectl("apply", "--server-side", "-f", str(runtime))
            if FINALIZER_POLICY:
                finalizer_policy.install(plane)
            for ns in ("latency", "scale"):
                plane.kubectl("create", "namespace", ns)
            executor = stack.executor(instant=True)
            operator = stack.operator("--artifact-store", "pvc://artifacts/store", env=extra_env)
            api = config.new_client_from_config(config_file=str(plane.kubeconfig))
            api.configuration.connection_pool_maxsize = 32
            if FINALIZER_POLICY:
                finalizer_policy.wait_in_effect(api, "latency")

            cpu_start = _cpu(operator, executor, plane)
            latencies = bench_latency(api, "latency")
            ready_small = wait_all_ready(api, "latency", LATENCY_N, 120)
            cpu_small = _cpu(operator, executor, plane)
            after_latency = _peak_rss_mb(operator.process.pid)
            total, deployed = bench_scale(api, "scale")
            cpu_deployed = _cpu(operator, executor, plane)
            ready_large = wait_all_ready(api, "scale", SCALE_N, 300)
            time.sleep(3)  # the audit log is written in batches
            cpu_large = _cpu(operator, executor, plane)
            peak = _peak_rss_mb(operator.process.pid)
            written = {n: requests_by(plane.audit_log, ns)
                       for n, ns in ((LATENCY_N, "latency"), (SCALE_N, "scale"))}  # fmt: skip
            read = {n: requests_by(plane.audit_log, ns, READ_VERBS, only="operator")
                    for n, ns in ((LATENCY_N, "latency"), (SCALE_N, "scale"))}  # fmt: skip
            ready_body = client.CustomObjectsApi(api).get_namespaced_custom_object(
                *MD[:2], "latency", MD[2], "lat-000"
            )
        finally:
            stack.stop()
            plane.stop()
    used = ", ".join(f"{n} {cpu_deployed[n] - cpu_small[n]:.0f} s" for n in cpu_deployed)
    print(f"machine: {os.cpu_count()} CPUs, shared by every process below and this benchmark")
    print(f"deployment mode: {MODE}; the chart's finalizer policy: {FINALIZER_POLICY}")
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
    read_us, wire_us = status_cost(ready_body)
    print(f"typed status of a Ready ModelDeployment: parse {read_us:.0f} µs, wire {wire_us:.0f} µs")
    for n, ready, before, after in ((LATENCY_N, ready_small, cpu_start, cpu_small),
                                    (SCALE_N, ready_large, cpu_small, cpu_large)):  # fmt: skip
        per = {k: (after[k] - before[k]) / n * 1000 for k in ("operator", "kube-apiserver")}
        print(f"\n{n} ModelDeployments ({ready} Ready): CPU per ModelDeployment, apply → Ready: "
              f"operator {per['operator']:.1f} ms, kube-apiserver {per['kube-apiserver']:.1f} ms")  # fmt: skip
        print("\n".join(request_table(written[n], n, "writes", ("operator", "executor"))))
        print()  # the operator's GETs and lists; the resync's cluster-wide listings are not in one
        print("\n".join(request_table(read[n], n, "reads", ("operator",))))


if __name__ == "__main__":
    main()
