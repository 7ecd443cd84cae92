"""``make demo``: what ModelDeploy does today, end to end on this machine, in about a minute.

Starts a real kube-apiserver + etcd with our CRD and KServe's installed, validates the examples
with ``modeldeploy validate``, applies them, shows one bad spec being refused with its field path
by both the CLI and the API server, and prints ``kubectl get mdep``. The operator that turns these
objects into staging Jobs and InferenceServices comes with the operator issue.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from modeldeploy.api.validation import validate_document
from modeldeploy.testing.controlplane import REPO_ROOT, Assets, ControlPlane, ControlPlaneError

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    _say("validating examples/ with the API models")
    for path in EXAMPLES:
        doc = yaml.safe_load(path.read_text())
        problems = validate_document(doc)
        print(f"{path.name}: {problems or 'valid'}")
        if problems:
            return 1

    with tempfile.TemporaryDirectory(prefix="modeldeploy-demo-") as tmp:
        plane = ControlPlane(Path(tmp), Assets.provide())
        _say("starting kube-apiserver + etcd with the ModelDeployment, KServe and Gateway API CRDs")
        try:
            plane.start()
        except ControlPlaneError as err:
            print(err, file=sys.stderr)
            return 1
        try:
            print(f"up at {plane.url}")
            for path in EXAMPLES:
                namespace = yaml.safe_load(path.read_text())["metadata"]["namespace"]
                plane.kubectl("create", "namespace", namespace, check=False)
                _say(f"kubectl apply --server-side -f examples/{path.name}")
                print(plane.kubectl("apply", "--server-side", "-f", str(path)).stdout.strip())

            _say("a spec whose canary weights go down is refused, by the CLI and the API server")
            bad = yaml.safe_load(EXAMPLES[0].read_text())
            bad["metadata"]["name"] = "bad-weights"
            bad["spec"]["rollout"]["steps"] = [{"weight": 50, "pause": "1m"}, {"weight": 20}]
            for problem in validate_document(bad):
                print(f"modeldeploy validate: {problem}")
            refused = plane.kubectl(
                "apply", "--server-side", "-f", "-", input=yaml.safe_dump(bad), check=False
            )
            print(f"kubectl: {refused.stderr.strip()}")

            _say("kubectl get mdep -A")
            print(plane.kubectl("get", "mdep", "-A").stdout.rstrip())
        finally:
            plane.stop()
    _say("done: the control plane is stopped. `make envtest-up` keeps one running for you.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
