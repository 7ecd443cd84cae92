"""A ``state_dict`` model whose module comes from a ConfigMap (``spec.model.code``): the operator
mounts it read-only into the staging Job's fetch and stage containers, the stage container
imports the factory from it (still through the entrypoint allow-list), and the fetch container
hashes it into the content key, so other code makes another artifact. The real operator, a real
staging Job run by the executor (which writes the ConfigMap's keys into the volume as the kubelet
does), and a served InferenceService."""

from __future__ import annotations

from typing import Any

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.staging_job import CODE_DIR, build_staging_job
from tests.operator.conftest import Kube, digits_spec
from tests.support.processes import LocalStack

FACTORY = """
from torch import nn


def build(channels: int = 4):
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(channels * 8 * 8, 10){tail}
    )
"""


def code_config_map(kube: Kube, name: str, tail: str = "") -> None:
    kube.core.create_namespaced_config_map(kube.namespace, {
        "metadata": {"name": name},
        "data": {"init.py": "", "digits.py": FACTORY.replace("{tail}", tail)},
    })  # fmt: skip


def artifact(kube: Kube) -> dict[str, Any]:
    return ((kube.get("digits") or {}).get("status") or {}).get("artifact") or {}


def test_a_state_dict_builds_from_code_in_a_config_map_and_new_code_is_a_new_artifact(
    kube: Kube, start_operator, stack: LocalStack, namespace: str
) -> None:  # type: ignore[no-untyped-def]
    import torch

    exec_globals: dict[str, Any] = {}
    exec(FACTORY.replace("{tail}", ""), exec_globals)  # the same module, to make the weights
    torch.manual_seed(0)
    weights = stack.pvc_root / "models" / namespace / "weights.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(exec_globals["build"]().state_dict(), weights)
    code_config_map(kube, "digits-code")
    start_operator(env={"MODELDEPLOY_ENTRYPOINT_MODULES": "quickmodels"})
    items = [{"key": "init.py", "path": "quickmodels/__init__.py"},
             {"key": "digits.py", "path": "quickmodels/digits.py"}]  # fmt: skip
    kube.create("digits", digits_spec(model={
        "uri": f"pvc://models/{namespace}/weights.pt", "format": "state_dict",
        "entrypoint": "quickmodels.digits:build", "entrypointArgs": {"channels": 4},
        "code": {"configMap": "digits-code", "items": items},
    }))  # fmt: skip
    kube.wait_condition("digits", "Ready", "True", timeout=240)
    first = artifact(kube)

    # New code, in a new ConfigMap: the same weights built by it are another artifact.
    code_config_map(kube, "digits-code-v2", tail=", nn.LogSoftmax(dim=1)")
    kube.patch_spec("digits", {"model": {"code": {"configMap": "digits-code-v2", "items": items}}})
    kube.wait("the new code's artifact",
              lambda: artifact(kube).get("uri") not in (None, first["uri"]), timeout=240)  # fmt: skip
    assert artifact(kube)["uri"] != first["uri"]


def test_the_code_is_mounted_read_only_into_fetch_and_stage_only() -> None:
    items = [{"key": "digits.py", "path": "quickmodels/digits.py"}]
    deployment = ModelDeployment.model_validate({
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "digits", "namespace": "ml"},
        "spec": digits_spec(model={
            "uri": "pvc://models/w.pt", "format": "state_dict",
            "entrypoint": "quickmodels.digits:build",
            "code": {"configMap": "digits-code", "items": items}}),
    })  # fmt: skip
    pod = build_staging_job(deployment, "uid", OperatorConfig())["spec"]["template"]["spec"]
    assert pod["volumes"][-1] == {"name": "code", "configMap": {"name": "digits-code",
                                                               "items": items}}  # fmt: skip
    by_name = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    mount = {"name": "code", "mountPath": CODE_DIR, "readOnly": True}
    for step in ("fetch", "stage"):
        assert mount in by_name[step]["volumeMounts"]
        assert {"name": "MODELDEPLOY_CODE_DIR", "value": CODE_DIR} in by_name[step]["env"]
    assert "code" not in {m["name"] for m in by_name["publish"]["volumeMounts"]}
