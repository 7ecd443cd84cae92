"""KServe 0.20's ``spec.canary`` in the pure parts: detection from the published schema, the
entry the operator writes, and what it reads back. The whole rollout, on KServe's own manager
and through the gateway, is ``tests/cluster/test_kserve_canary.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy.api.base import duration_seconds
from modeldeploy.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ObjectMeta
from modeldeploy.api.status import GatewayServing, ModelDeploymentStatus, Traffic
from modeldeploy.controller import naming
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.inference_service import (
    CanaryEntry,
    ServingRuntimeRef,
    build_inference_service,
    canary_replicas,
)
from modeldeploy.controller.kserve_features import has_canary
from modeldeploy.controller.reconcile import Observed, Plan, _carry_slotted
from modeldeploy.controller.rollout import Decision, Serving
from modeldeploy.controller.route import Backends, build_http_route
from modeldeploy.controller.serving_state import condition_reason, isvc_readiness, slotted_serving

RUNTIME = ServingRuntimeRef("modeldeploy-onnx", "ClusterServingRuntime")
STABLE, NEW = ("pvc://a/store/d-1", "1111111111"), ("pvc://a/store/d-2", "2222222222")


T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def served_since(since: datetime | None) -> Traffic:
    """The traffic status with every gateway serving the route from ``since`` (None: a gateway
    has not accepted the route's current generation yet)."""
    gateway = None if since is None else GatewayServing(generation=5, since=since)
    return Traffic(stable=0, canary=100, gateway=gateway)


def deployment(min_replicas: int = 4) -> ModelDeployment:
    spec = {"model": {"uri": "pvc://m/x.onnx", "format": "onnx",
                      "inputs": [{"name": "x", "shape": [4]}]},
            "serving": {"scaling": {"minReplicas": min_replicas, "maxReplicas": 8}}}  # fmt: skip
    return ModelDeployment(metadata=ObjectMeta(name="d", namespace="ml"),
                           spec=ModelDeploymentSpec.model_validate(spec))  # fmt: skip


def openapi(spec: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    schemas = {"io.kserve.serving.v1beta1.InferenceService": {"properties": {"spec": spec}},
               **(extra or {})}  # fmt: skip
    return {"components": {"schemas": schemas}}


def test_spec_canary_is_found_in_the_published_schema_inline_or_by_reference() -> None:
    assert has_canary(openapi({"properties": {"predictor": {}, "canary": {"type": "array"}}}))
    assert not has_canary(openapi({"properties": {"predictor": {}}}))  # KServe 0.16
    referenced = openapi({"allOf": [{"$ref": "#/components/schemas/Spec"}]},
                         {"Spec": {"properties": {"canary": {}}}})  # fmt: skip
    assert has_canary(referenced)
    assert not has_canary({"components": {"schemas": {"x.Other": {"properties": {"spec": {
        "properties": {"canary": {}}}}}}}})  # fmt: skip
    assert not has_canary({})


def test_the_setting_is_auto_on_or_off_and_anything_else_is_refused() -> None:
    assert not OperatorConfig().native_canary  # auto, unresolved: the path every KServe has
    assert OperatorConfig(kserve_canary="on").native_canary
    assert not OperatorConfig.from_env({"MODELDEPLOY_KSERVE_CANARY": "off"}).native_canary
    with pytest.raises(ValueError, match="kserve canary 'yes': use one of auto, on, off"):
        OperatorConfig(kserve_canary="yes")


def test_the_operators_scale_down_delay_is_read_from_the_environment_and_bounded() -> None:
    assert OperatorConfig().scale_down_delay_seconds == 30  # Argo Rollouts' default
    env = {"MODELDEPLOY_SCALE_DOWN_DELAY_SECONDS": "2.5"}
    assert OperatorConfig.from_env(env).scale_down_delay_seconds == 2.5
    with pytest.raises(ValueError, match="MODELDEPLOY_SCALE_DOWN_DELAY_SECONDS -1: use 0 to 3600"):
        OperatorConfig.from_env({"MODELDEPLOY_SCALE_DOWN_DELAY_SECONDS": "-1"})


@pytest.mark.parametrize(("stable", "weight", "replicas"),
                         [(1, 0, 1), (1, 90, 1), (10, 0, 1), (10, 10, 1), (10, 50, 5),
                          (10, 55, 6), (10, 100, 10), (4, 90, 4)])  # fmt: skip
def test_a_canary_has_pods_for_its_share_at_least_one_at_most_stables(
    stable: int, weight: int, replicas: int
) -> None:
    assert canary_replicas(stable, weight) == replicas


def test_the_canary_entry_is_the_candidates_predictor_without_autoscaling() -> None:
    isvc = build_inference_service(deployment(), "uid", STABLE[0], RUNTIME, STABLE[1],
                                   predictor_name="b",
                                   canary=CanaryEntry("a", NEW[0], NEW[1], 50))  # fmt: skip
    stable = isvc["spec"]["predictor"]
    assert stable["name"] == "b"
    assert stable["model"]["storageUri"] == STABLE[0]
    assert (stable["minReplicas"], stable["maxReplicas"]) == (4, 8)
    [entry] = isvc["spec"]["canary"]
    assert entry["trafficPercent"] == 50
    candidate = entry["predictor"]
    assert candidate["name"] == "a"
    assert candidate["minReplicas"] == 2
    # KServe refuses these on a canary (inference_service_validation.go).
    for refused in ("maxReplicas", "scaleMetric", "scaleTarget", "autoScaling"):
        assert refused not in candidate
    assert candidate["model"]["storageUri"] == NEW[0]
    assert candidate["labels"][naming.REVISION_LABEL] == NEW[1]
    # Spelled out in full: promoted by rename, stable's pod template is the canary's.
    promoted = build_inference_service(deployment(), "uid", NEW[0], RUNTIME, NEW[1],
                                       predictor_name="a")["spec"]["predictor"]  # fmt: skip
    for field in ("model", "labels", "volumes", "automountServiceAccountToken"):
        assert promoted[field] == candidate[field], field
    # Without a name (KServe's default, and every InferenceService made before 0.20).
    plain = build_inference_service(deployment(), "uid", STABLE[0], RUNTIME, STABLE[1])
    assert "name" not in plain["spec"]["predictor"]
    assert "canary" not in plain["spec"]


def test_stable_and_canary_take_turns_with_two_one_letter_slots() -> None:
    assert naming.canary_slot("") == "a"
    assert naming.canary_slot("a") == "b"
    assert naming.canary_slot("b") == "a"
    assert naming.predictor_service("d", "a") == "d-a-predictor"
    assert naming.predictor_service("d") == "d-predictor"
    # The longest name still makes KServe's pod label app=isvc.<name>-<slot>-predictor valid.
    assert len("isvc." + naming.predictor_service("n" * 45, "a")) <= 63


def slotted_isvc(
    percent: int = 10, ready: bool = True, reported: int | None = None
) -> dict[str, Any]:
    return {"metadata": {"generation": 3},
            "spec": {"predictor": {"model": {"storageUri": STABLE[0]}},
                     "canary": [{"predictor": {"name": "a", "model": {"storageUri": NEW[0]}},
                                 "trafficPercent": percent}]},
            "status": {"observedGeneration": 1,  # KServe copies the stable Deployment's
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "canaryStatuses": [{"name": "a", "ready": ready, "trafficPercent":
                                           percent if reported is None else reported}]}}  # fmt: skip


def rolled(revision: str, available: int = 1) -> dict[str, Any]:
    return {"metadata": {"generation": 2},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {
                naming.REVISION_LABEL: revision}}}},
            "status": {"observedGeneration": 2, "updatedReplicas": 1,
                       "availableReplicas": available}}  # fmt: skip


def test_a_spec_canary_entry_is_ready_when_kserve_and_its_deployment_both_say_so() -> None:
    route = build_http_route(deployment(), "uid", OperatorConfig(), 10, True,
                             Backends.slots("d", "", "a"))  # fmt: skip
    assert [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]] == [
        ("d-predictor", 90), ("d-a-predictor", 10)]  # fmt: skip

    def serving(isvc: dict[str, Any], canary_deployment: dict[str, Any] | None) -> Any:
        return slotted_serving(isvc, route, NEW, "d", "ml", (None, canary_deployment))

    found = serving(slotted_isvc(), rolled(NEW[1]))
    assert found.weights == (90, 10)
    assert found.canary_ready
    assert found.canary_url == "http://d-a-predictor.ml.svc.cluster.local"
    assert found.stable_settled_on is None  # a canary is still beside it
    # Not ready: KServe says not; the slot's Deployment still serves the previous candidate's
    # pods; no pod available.
    assert not serving(slotted_isvc(ready=False), rolled(NEW[1])).canary_ready
    # KServe not caught up with the share: still ready, the weight read back is KServe's.
    lagging = serving(slotted_isvc(reported=0), rolled(NEW[1]))
    assert lagging.canary_ready
    assert lagging.weights == (100, 0)
    assert not serving(slotted_isvc(), rolled(STABLE[1])).canary_ready
    assert not serving(slotted_isvc(), rolled(NEW[1], available=0)).canary_ready
    assert not serving(slotted_isvc(), None).canary_ready
    # After the rename: stable is predictor "a", settled once its Deployment rolled out.
    renamed = {"metadata": {"generation": 4},
               "spec": {"predictor": {"name": "a", "model": {"storageUri": NEW[0]}}},
               "status": {"observedGeneration": 1,
                          "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
    settled = slotted_serving(renamed, None, NEW, "d", "ml", (rolled(NEW[1]), None),
                              {NEW[0]: NEW[1]})  # fmt: skip
    assert settled.stable_settled_on == NEW[0]


def test_kserves_reasons_with_spaces_become_condition_reasons() -> None:
    assert condition_reason("Predictor Deployment NotReady", "X") == "PredictorDeploymentNotReady"
    assert condition_reason("", "InferenceServiceNotReady") == "InferenceServiceNotReady"
    assert condition_reason("42 errors", "X") == "X"
    isvc = {"status": {"conditions": [{"type": "Ready", "status": "False",
                                       "reason": "Predictor Deployment NotReady"}]}}  # fmt: skip
    assert isvc_readiness(isvc)[:2] == (False, "PredictorDeploymentNotReady")


def test_a_promotion_renamed_but_not_yet_settled_never_gets_a_second_canary_entry() -> None:
    """Between KServe's rename and its Deployment's rollout of the new revision, the rollout is
    still Promoting: stable stays on the candidate's slot, with no new entry beside it."""
    body = {"metadata": {"name": "d", "namespace": "ml", "uid": "uid"}}
    renamed = {"spec": {"predictor": {"name": "a", "model": {"storageUri": NEW[0]}}}}
    status = ModelDeploymentStatus.model_validate(
        {"revisions": {"stable": STABLE[1], "stableUri": STABLE[0], "canary": NEW[1],
                       "canaryUri": NEW[0]}})  # fmt: skip
    observed = Observed(body=body, runtime=RUNTIME, secret_missing=None, jobs=[], outcome=None,
                        isvc=renamed, status=status)  # fmt: skip
    decision = Decision(stable_uri=NEW[0], canary_uri=NEW[0], canary_weight=100, canary_isvc=True)
    found = Plan()
    _carry_slotted(observed, deployment(), decision, Serving(weights=(100, 0), exists=True), NEW,
                   RUNTIME, OperatorConfig(kserve_canary="on"), found, T0)  # fmt: skip
    assert found.apply_isvc is not None
    assert "canary" not in found.apply_isvc["spec"]
    assert found.apply_isvc["spec"]["predictor"]["name"] == "a"
    assert found.apply_isvc["spec"]["predictor"]["model"]["storageUri"] == NEW[0]
    assert found.apply_route is not None
    refs = found.apply_route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("d-a-predictor", 100)]


def test_a_rolled_back_entry_is_kept_at_zero_until_the_route_and_kserve_read_zero() -> None:
    body = {"metadata": {"name": "d", "namespace": "ml", "uid": "uid"}}
    live = slotted_isvc(percent=10)
    status = ModelDeploymentStatus.model_validate(
        {"revisions": {"stable": STABLE[1], "stableUri": STABLE[0], "failed": NEW[1],
                       "canaryUri": NEW[0]}})  # fmt: skip
    observed = Observed(body=body, runtime=RUNTIME, secret_missing=None, jobs=[], outcome=None,
                        isvc=live, status=status)  # fmt: skip
    # The gateway has served the route for longer than the scale-down delay.
    decision = Decision(stable_uri=STABLE[0], canary_uri=NEW[0], canary_isvc=False,
                        traffic=served_since(T0 - timedelta(minutes=1)))  # fmt: skip

    def carried(weights: tuple[int, int]) -> Plan:
        found = Plan()
        _carry_slotted(observed, deployment(), decision, Serving(weights=weights, exists=True),
                       NEW, RUNTIME, OperatorConfig(kserve_canary="on"), found, T0)  # fmt: skip
        return found

    holding = carried((90, 10))
    assert holding.apply_isvc is not None
    [entry] = holding.apply_isvc["spec"]["canary"]
    assert (entry["predictor"]["name"], entry["trafficPercent"]) == ("a", 0)
    assert holding.requeue_after == 1.0
    assert holding.apply_route is not None
    refs = holding.apply_route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("d-predictor", 100)]
    gone = carried((100, 0))
    assert gone.apply_isvc is not None
    assert "canary" not in gone.apply_isvc["spec"]


@pytest.mark.parametrize(
    ("since", "delay", "own", "goes"),
    [
        (None, 3, None, False),  # the gateway has not accepted the route yet
        (T0 - timedelta(seconds=2), 3, None, False),  # accepted 2 s ago, the operator's 3 s
        (T0 - timedelta(seconds=3), 3, None, True),
        (T0 - timedelta(seconds=3), 3, "10s", False),  # the rollout's own delay wins
        (T0 - timedelta(seconds=10), 30, "10s", True),
        (T0, 0, None, True),  # no delay: as soon as the gateway has accepted it
    ],
)
def test_the_rename_and_a_rollbacks_removal_wait_for_the_gateway_and_the_scale_down_delay(
    since: datetime | None, delay: float, own: str | None, goes: bool
) -> None:
    """The route at 100% (or at 0% after a rollback) reads back; KServe's next step stops the
    pods the old weights reached only once every gateway has served that route for the
    scale-down delay (``spec.rollout.scaleDownDelay``, else the operator's), and looks again
    when the delay ends."""
    body = {"metadata": {"name": "d", "namespace": "ml", "uid": "uid"}}
    revisions = {"stable": STABLE[1], "stableUri": STABLE[0], "canary": NEW[1], "canaryUri": NEW[0]}
    observed = Observed(body=body, runtime=RUNTIME, secret_missing=None, jobs=[], outcome=None,
                        isvc=slotted_isvc(percent=100),
                        status=ModelDeploymentStatus.model_validate({"revisions": revisions}))  # fmt: skip
    target = deployment()
    if own is not None:
        target.spec.rollout.scale_down_delay = own
    config = OperatorConfig(kserve_canary="on", scale_down_delay_seconds=delay)
    promote = Plan()
    _carry_slotted(observed, target,
                   Decision(stable_uri=NEW[0], canary_uri=NEW[0], canary_weight=100,
                            canary_isvc=True, traffic=served_since(since)),
                   Serving(weights=(0, 100), canary_ready=True, exists=True), NEW, RUNTIME,
                   config, promote, T0)  # fmt: skip
    assert promote.apply_isvc is not None
    renamed = promote.apply_isvc["spec"]["predictor"].get("name") == "a"
    assert renamed is goes
    assert ("canary" not in promote.apply_isvc["spec"]) is goes
    left = None if since is None else duration_seconds(own or f"{delay}s") - (T0 - since).seconds
    assert promote.requeue_after == (1.0 if goes or left is None else left)
    rollback = Plan()
    _carry_slotted(observed, target,
                   Decision(stable_uri=STABLE[0], canary_uri=NEW[0], canary_isvc=False,
                            traffic=served_since(since)),
                   Serving(weights=(100, 0), exists=True), NEW, RUNTIME, config, rollback, T0)  # fmt: skip
    assert rollback.apply_isvc is not None
    assert ("canary" not in rollback.apply_isvc["spec"]) is goes
    if not goes:
        assert rollback.requeue_after == (1.0 if left is None else left)


def test_a_canary_service_from_before_kserve_0_20_goes_after_the_scale_down_delay() -> None:
    """An operator upgraded in the middle of a rollout on the two-InferenceService path: its
    route no longer sends ``d-canary`` anything, and ``d-canary`` is deleted once every gateway
    has served that route for the delay, as an entry's pods would be."""
    route = build_http_route(deployment(), "uid", OperatorConfig(), 0, False,
                             Backends.slots("d", "", "a"))  # fmt: skip
    route["metadata"]["generation"] = 2
    stable = {"metadata": {"generation": 1},
              "spec": {"predictor": {"model": {"storageUri": STABLE[0]}}},
              "status": {"conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
    serving = slotted_serving(stable, route, None, "d", "ml", separate_canary=True)
    assert serving.accepted_route == 2
    assert slotted_serving(stable, route, None, "d", "ml").accepted_route is None
    body = {"metadata": {"name": "d", "namespace": "ml", "uid": "uid"}}
    revisions = {"stable": STABLE[1], "stableUri": STABLE[0]}
    observed = Observed(body=body, runtime=RUNTIME, secret_missing=None, jobs=[], outcome=None,
                        isvc=stable, canary_isvc={"metadata": {"name": "d-canary"}}, route=route,
                        status=ModelDeploymentStatus.model_validate({"revisions": revisions}))  # fmt: skip
    config = OperatorConfig(kserve_canary="on", scale_down_delay_seconds=3)
    for since, deleted, next_look in ((None, False, 1.0), (T0 - timedelta(seconds=1), False, 2.0),
                                      (T0 - timedelta(seconds=3), True, None)):  # fmt: skip
        found = Plan()
        _carry_slotted(observed, deployment(),
                       Decision(stable_uri=STABLE[0], traffic=served_since(since)), serving,
                       STABLE, RUNTIME, config, found, T0)  # fmt: skip
        assert found.delete_canary is deleted, since
        assert deleted or found.requeue_after == next_look
