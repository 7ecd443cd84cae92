"""KServe before ``spec.canary`` (0.15-0.19), at the schema level: a second real API server with
KServe v0.16.0's own CRDs (``KSERVE_LEGACY_VERSION``, read by ``make envtest``). The operator's
detection reads that schema and takes the separate-InferenceService path, and every object that
path writes (stable, ``<name>-canary`` and the weighted route, from the operator's own builders,
for every example) is stored intact under strict field validation, while what the 0.20 path
writes is refused there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from modeldeploy.api.validation import parse
from modeldeploy.controller import kserve_features, naming
from modeldeploy.controller.config import KSERVE_CANARY_OFF, KSERVE_CANARY_ON, OperatorConfig
from modeldeploy.controller.inference_service import (
    CanaryEntry,
    ServingRuntimeRef,
    build_inference_service,
)
from modeldeploy.controller.route import build_http_route
from tests.support import Assets
from tests.support.controlplane import REPO_ROOT, ControlPlane

ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
ROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")
UID = "0b5e8f3c-0000-4000-8000-000000000000"
NAMESPACE = "legacy"
CONFIG = OperatorConfig(artifact_store="pvc://artifacts/store")
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


def legacy_version() -> str:
    text = (REPO_ROOT / "hack" / "envtest" / "versions.env").read_text()
    found = re.search(r"^KSERVE_LEGACY_VERSION=(\S+)$", text, re.MULTILINE)
    assert found is not None, "KSERVE_LEGACY_VERSION is not pinned in versions.env"
    return found.group(1)


@pytest.fixture(scope="module")
def legacy_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.ApiClient]:
    """An API server whose InferenceService CRD is KServe v0.16.0's."""
    assets = Assets.provide()
    crds = assets.crd_dir / f"kserve-{legacy_version()}"
    plane = ControlPlane(tmp_path_factory.mktemp("kserve-legacy"), Assets(assets.bin_dir, crds))
    plane.start()
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        yield api
    finally:
        api.close()
        plane.stop()


def _deployment(path: Path) -> Any:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["namespace"] = NAMESPACE
    return parse(doc)


def _unowned(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].pop("ownerReferences")  # no ModelDeployment exists on this API server
    return obj


def _create(api: client.ApiClient, kind: tuple[str, str, str], obj: dict[str, Any]) -> Any:
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        *kind[:2], NAMESPACE, kind[2], obj, field_validation="Strict"
    )


def test_the_operator_reads_no_spec_canary_in_kserve_016_and_finds_it_in_020(
    legacy_api: client.ApiClient, api_client: client.ApiClient
) -> None:
    assert kserve_features.resolve(CONFIG, legacy_api) == KSERVE_CANARY_OFF
    assert kserve_features.resolve(CONFIG, api_client) == KSERVE_CANARY_ON


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_separate_canary_path_is_stored_intact_by_kserve_016(
    legacy_api: client.ApiClient, example: Path
) -> None:
    deployment = _deployment(example)
    name = deployment.metadata.name
    runtime = ServingRuntimeRef("modeldeploy-onnx", "ClusterServingRuntime")
    stable = _unowned(build_inference_service(
        deployment, UID, f"pvc://artifacts/store/{name}-1111", runtime, revision="1111aaaa"
    ))  # fmt: skip
    canary = _unowned(build_inference_service(
        deployment, UID, f"pvc://artifacts/store/{name}-2222", runtime, revision="2222bbbb",
        isvc_name=naming.canary_name(name), role=naming.CANARY,
    ))  # fmt: skip
    route = _unowned(build_http_route(deployment, UID, CONFIG, 30, True))
    try:
        for kind, sent in ((ISVC, stable), (ISVC, canary), (ROUTE, route)):
            stored = _create(legacy_api, kind, sent)
            # Nothing we sent was pruned or changed by 0.16's schema.
            assert {k: stored["spec"].get(k) for k in sent["spec"]} == sent["spec"], kind
        weights = {r["name"]: r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]}
        assert weights == {naming.predictor_service(name): 70,
                           naming.predictor_service(naming.canary_name(name)): 30}  # fmt: skip
        assert route["metadata"]["name"] != name  # KServe's own route is named after the isvc
    finally:
        custom = client.CustomObjectsApi(legacy_api)
        for kind, obj in ((ISVC, stable), (ISVC, canary), (ROUTE, route)):
            try:
                custom.delete_namespaced_custom_object(
                    *kind[:2], NAMESPACE, kind[2], obj["metadata"]["name"]
                )
            except ApiException as err:
                if err.status != 404:
                    raise


def test_what_the_020_path_writes_is_refused_by_kserve_016(legacy_api: client.ApiClient) -> None:
    """The reason for detection: a ``spec.canary`` entry is an unknown field before 0.20."""
    deployment = _deployment(REPO_ROOT / "examples" / "fraud-standard-onnx.yaml")
    slotted = _unowned(build_inference_service(
        deployment, UID, "pvc://artifacts/store/fraud-1111",
        ServingRuntimeRef("modeldeploy-onnx", "ClusterServingRuntime"), revision="1111aaaa",
        predictor_name="a",
        canary=CanaryEntry(slot="b", uri="pvc://artifacts/store/fraud-2222",
                           revision="2222bbbb", traffic_percent=10),
    ))  # fmt: skip
    assert slotted["spec"]["canary"]
    with pytest.raises(ApiException) as refused:
        _create(legacy_api, ISVC, slotted)
    assert refused.value.status == 400
    assert "spec.canary" in str(refused.value.body), refused.value.body
