"""``make demo``: ModelDeploy end to end on this machine, in about a minute.

1. Validates every example with ``modeldeploy validate``.
2. Starts a cluster (``tests/support/cluster.py``): kube-apiserver + etcd with the
   ModelDeployment, KServe and Gateway API CRDs, kube-controller-manager, kube-scheduler,
   KServe's own manager (Standard mode, Gateway API), a gateway for KServe's Gateway (a stand-in
   for Traefik, which cannot be built here) and a node whose pods run as local processes, each in
   a network namespace of its own; our ClusterServingRuntime is installed.
3. Builds a model on the spot (a small CNN trained on scikit-learn's digits, TorchScript) on the
   "models" volume (a PersistentVolumeClaim bound to a hostPath volume).
4. Installs ModelDeploy as a user does: ``helm install`` of ``charts/modeldeploy``. The
   operator runs as the chart's Deployment, in a pod the node runs (``modeldeploy operator``,
   as the operator image would), authenticated by the chart's ServiceAccount token: the chart's
   RBAC is exactly what it has.
5. Applies ``examples/digits-cpu.yaml`` and prints each condition as it changes until Ready:
   the Job controller runs the staging Job's pod, KServe turns the InferenceService into a
   predictor Deployment, the node runs its pod, the gateway accepts KServe's HTTPRoutes.
6. Sends a real PNG with ``tritonclient`` through the gateway to the URL KServe wrote into the
   InferenceService's status, and prints the top 5; then once more to the ModelDeployment's own
   ``status.url``, the host of its traffic route on the same Gateway.
7. Shows ``kubectl get mdep``, and a bad spec refused by both the CLI and the API server.

Then it keeps everything running until Ctrl-C (``DEMO_EXIT=1`` exits at once, as CI does).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from modeldeploy.api.validation import validate_document
from tests.support.cluster import CHART_NAMESPACE, KServeCluster, through_gateway
from tests.support.controlplane import REPO_ROOT, ControlPlane, ControlPlaneError
from tests.support.demo_model import build_digits_model, digit_png

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
DEMO = REPO_ROOT / "examples" / "digits-cpu.yaml"
STORE = "pvc://artifacts/store"
OPERATOR_NAMESPACE = CHART_NAMESPACE


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _status(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = plane.kubectl("get", "mdep", name, "-n", namespace, "-o", "json", check=False).stdout
    status: dict[str, Any] = json.loads(out or "{}").get("status") or {}
    return status


def _wait_ready(
    plane: ControlPlane, namespace: str, name: str, timeout: float = 300
) -> dict[str, Any]:
    seen: set[tuple[str, str, str]] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(plane, namespace, name)
        for cond in status.get("conditions") or []:
            key = (cond["type"], cond["status"], cond["reason"])
            if key not in seen:
                seen.add(key)
                print(
                    f"  {cond['type']:<14} {cond['status']:<8} {cond['reason']}: {cond['message']}"[
                        :160
                    ]
                )
            if cond["type"] == "Ready" and cond["status"] == "True":
                return status
        time.sleep(0.5)
    raise TimeoutError(f"{name} not Ready after {timeout:.0f}s: {json.dumps(status)[:2000]}")


def _infer(gateway: str, url: str, model: str) -> None:
    """Through the gateway at ``gateway``, to the host of ``url`` (no DNS resolves it here),
    once the gateway routes that host to a ready endpoint."""
    import numpy as np
    import tritonclient.http as httpclient

    ready = urllib.request.Request(f"{gateway}/v2/models/{model}/ready",
                                   headers={"Host": urlparse(url).netloc})  # fmt: skip
    through_gateway(f"{url} routed", lambda: urllib.request.urlopen(ready, timeout=10).close())

    png, truth = digit_png(7)
    client = httpclient.InferenceServerClient(gateway.removeprefix("http://"))
    item = httpclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([png], dtype=np.object_), binary_data=True)
    result = client.infer(
        model,
        [item],
        headers={"Host": urlparse(url).netloc},
        outputs=[
            httpclient.InferRequestedOutput("labels"),
            httpclient.InferRequestedOutput("scores"),
        ],
    )
    print(
        f"sent a {len(png)}-byte PNG of a handwritten '{truth}' to {url}/v2/models/{model}/infer"
        f" (through the gateway at {gateway})"
    )
    for rank, (label, score) in enumerate(
        zip(result.as_numpy("labels")[0], result.as_numpy("scores")[0], strict=True), 1
    ):
        print(f"  top-{rank}: {label.decode():<6} {score:.4f}")


def _validate_examples() -> bool:
    _say("validating examples/ with the API models")
    for path in EXAMPLES:
        problems = validate_document(yaml.safe_load(path.read_text()))
        print(f"{path.name}: {problems or 'valid'}")
        if problems:
            return False
    return True


def _show_refusal(plane: ControlPlane) -> None:
    _say("a spec whose canary weights go down is refused, by the CLI and the API server")
    bad = yaml.safe_load(DEMO.read_text())
    bad["metadata"]["name"] = "bad-weights"
    bad["spec"]["rollout"] = {"steps": [{"weight": 50, "pause": "1m"}, {"weight": 20}]}
    for problem in validate_document(bad):
        print(f"modeldeploy validate: {problem}")
    refused = plane.kubectl(
        "apply", "--server-side", "-f", "-", input=yaml.safe_dump(bad), check=False
    )
    print(f"kubectl: {refused.stderr.strip()}")


def run(workdir: Path, keep_running: bool) -> int:
    cluster = KServeCluster(workdir / "cluster")
    _say(
        "starting the cluster: kube-apiserver + etcd, controllers, scheduler, KServe, gateway, node"
    )
    started = time.monotonic()
    try:
        cluster.start()
    except ControlPlaneError as err:
        print(err, file=sys.stderr)
        return 1
    plane = cluster.plane
    print(f"up at {plane.url} in {time.monotonic() - started:.1f}s")
    try:
        namespace = yaml.safe_load(DEMO.read_text())["metadata"]["namespace"]
        cluster.claim(namespace, "models")
        cluster.claim(namespace, "artifacts", mode=0o777)  # the staging image's user writes it

        _say("building the model on the spot: a CNN trained on scikit-learn's digits (TorchScript)")
        model = build_digits_model(cluster.pvc_root / "models" / "digits" / "model.pt")
        print(f"pvc://models/digits/model.pt ({model.stat().st_size} bytes)")

        _say(f"helm install modeldeploy charts/modeldeploy -n {OPERATOR_NAMESPACE}")
        print(cluster.install_chart(STORE, namespace))
        print(f"pods' logs: {cluster.workdir / 'node' / 'pods'}")

        _say(f"kubectl apply --server-side -f examples/{DEMO.name}")
        print(plane.kubectl("apply", "--server-side", "-f", str(DEMO)).stdout.strip())
        started = time.monotonic()
        status = _wait_ready(plane, namespace, "digits")
        print(
            f"Ready after {time.monotonic() - started:.1f}s; artifact {status['artifact']['uri']}"
        )
        parity = status["artifact"].get("parity", {})
        print(f"parity: max |Δ| {parity.get('maxAbsDiff')} over {parity.get('samples')} samples")

        isvc_url = plane.kubectl(
            "get", "isvc", "digits", "-n", namespace, "-o", "jsonpath={.status.url}"
        ).stdout.strip()
        _say("inference with tritonclient through the InferenceService's URL")
        _infer(cluster.gateway.url, isvc_url, "digits")
        _say("and through the ModelDeployment's URL (its traffic route)")
        _infer(cluster.gateway.url, status["url"], "digits")

        _say(f"kubectl get mdep,isvc,deploy,pods -n {namespace}")
        print(plane.kubectl("get", "mdep,isvc", "-n", namespace).stdout.rstrip())
        print(
            plane.kubectl("get", "jobs,deploy,pods", "-n", namespace, "-o", "wide").stdout.rstrip()
        )
        _say(f"kubectl get deploy,pods -n {OPERATOR_NAMESPACE} (the operator, from the chart)")
        print(plane.kubectl("get", "deploy,pods", "-n", OPERATOR_NAMESPACE, "-o", "wide")
              .stdout.rstrip())  # fmt: skip
        _show_refusal(plane)

        if keep_running:
            _say("everything keeps running; Ctrl-C stops it")
            print(f"export KUBECONFIG={plane.kubeconfig}")
            print(f"export PATH={plane.assets.bin_dir}:$PATH")
            host = urlparse(isvc_url).netloc
            print(f"curl -H 'Host: {host}' {cluster.gateway.url}/v2/models/digits")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except (TimeoutError, RuntimeError) as err:
        print(f"demo failed: {err}", file=sys.stderr)
        for log in sorted((cluster.workdir / "node" / "pods").glob("*/*/*.log")):
            print(f"--- {log}:\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    _say("done: the cluster, with the operator in it, is stopped")
    return 0


def main() -> int:
    if not _validate_examples():
        return 1
    keep_running = os.environ.get("DEMO_EXIT", "") not in ("1", "true", "yes")
    if keep_running:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with tempfile.TemporaryDirectory(prefix="modeldeploy-demo-") as tmp:
        return run(Path(tmp), keep_running)


if __name__ == "__main__":
    sys.exit(main())
