"""``make demo``: ModelDeploy end to end on this machine, in about a minute.

1. Validates every example with ``modeldeploy validate``.
2. Starts a real kube-apiserver + etcd with the ModelDeployment, KServe and Gateway API CRDs and
   installs our ClusterServingRuntime.
3. Builds a model on the spot (a small CNN trained on scikit-learn's digits, TorchScript) on the
   "models" volume, which the local executor maps to a folder.
4. Starts the operator (``modeldeploy operator``, as in a pod) and the local executor, which
   plays the kubelet and KServe: it runs the staging Job's ``modeldeploy stage`` and serves each
   InferenceService revision with ``modeldeploy serve`` on 127.0.0.1.
5. Applies ``examples/digits-cpu.yaml`` and prints each condition as it changes until Ready.
6. Sends a real PNG with ``tritonclient`` through the URL KServe wrote into the InferenceService's
   status, and prints the top 5. The ModelDeployment's own ``status.url`` is the Gateway host
   of its HTTPRoute (what clients use on a cluster); there is no gateway on this machine.
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
from pathlib import Path
from typing import Any

import yaml

from modeldeploy.api.validation import validate_document
from tests.support.controlplane import REPO_ROOT, Assets, ControlPlane, ControlPlaneError
from tests.support.demo_model import build_digits_model, digit_png
from tests.support.processes import LocalStack

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
DEMO = REPO_ROOT / "examples" / "digits-cpu.yaml"
STORE = "pvc://artifacts/store"


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


def _infer(url: str, model: str) -> None:
    import numpy as np
    import tritonclient.http as httpclient

    png, truth = digit_png(7)
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    item = httpclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([png], dtype=np.object_), binary_data=True)
    result = client.infer(
        model,
        [item],
        outputs=[
            httpclient.InferRequestedOutput("labels"),
            httpclient.InferRequestedOutput("scores"),
        ],
    )
    print(f"sent a {len(png)}-byte PNG of a handwritten '{truth}' to {url}/v2/models/{model}/infer")
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
    plane = ControlPlane(workdir / "plane", Assets.provide())
    _say("starting kube-apiserver + etcd with the ModelDeployment, KServe and Gateway API CRDs")
    try:
        plane.start()
    except ControlPlaneError as err:
        print(err, file=sys.stderr)
        return 1
    stack = LocalStack(plane.kubeconfig, workdir / "processes", workdir / "pvc")
    try:
        print(f"up at {plane.url}")
        print(
            plane.kubectl(
                "apply",
                "--server-side",
                "-f",
                str(REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"),
            ).stdout.strip()
        )
        namespace = yaml.safe_load(DEMO.read_text())["metadata"]["namespace"]
        plane.kubectl("create", "namespace", namespace)

        _say("building the model on the spot: a CNN trained on scikit-learn's digits (TorchScript)")
        model = build_digits_model(stack.pvc_root / "models" / "digits" / "model.pt")
        print(f"pvc://models/digits/model.pt ({model.stat().st_size} bytes)")

        _say(f"starting the operator (artifact store {STORE}) and the local executor")
        stack.executor()
        stack.operator("--artifact-store", STORE)
        print(f"logs: {stack.workdir}")

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
        print(
            f"(status.url {status['url']} is the Gateway host that splits traffic on a cluster; "
            "there is no gateway here)"
        )
        _infer(isvc_url, "digits")

        _say(f"kubectl get mdep,isvc -n {namespace}")
        print(plane.kubectl("get", "mdep,isvc", "-n", namespace).stdout.rstrip())
        _show_refusal(plane)

        if keep_running:
            _say("everything keeps running; Ctrl-C stops it")
            print(f"export KUBECONFIG={plane.kubeconfig}")
            print(f"export PATH={plane.assets.bin_dir}:$PATH")
            print(f"curl {isvc_url}/v2/models/digits")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except (TimeoutError, RuntimeError) as err:
        print(f"demo failed: {err}", file=sys.stderr)
        for managed in stack.processes:
            print(f"--- {managed.name} log:\n{managed.log_text()[-4000:]}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        plane.stop()
    _say("done: the operator, the executor and the control plane are stopped")
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
