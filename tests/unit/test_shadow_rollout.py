"""The shadow phase's pure parts: its place in the rollout state machine (time injected), the
ConfigMap that tells stable what to mirror, the predictor's mount of it, the PromQL that judges
it and the evidence check. The same behaviour runs end to end in tests/operator/test_shadow.py
and tests/runtime/test_shadow.py."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from modeldeploy.api import mirror
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.api.rollout import RolloutSpec
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.api.validation import validate_document
from modeldeploy.controller.analysis import shadow_queries
from modeldeploy.controller.inference_service import ServingRuntimeRef, build_inference_service
from modeldeploy.controller.rollout import (
    AnalysisResult,
    Artifact,
    Inputs,
    Serving,
    ShadowResult,
    Target,
    analysis_due,
    decide,
)
from modeldeploy.controller.shadow import get_mirror_config, get_shadow_config_map
from modeldeploy.controller.shadow_evidence import check_evidence
from modeldeploy.rollout_control import describe
from modeldeploy.runtime.shadow import compare, evidence_npz
from tests.unit.test_rollout import step, stored

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STABLE = Artifact("aaaaaaaaaa", "pvc://a/digits-old")
NEW = Artifact("bbbbbbbbbb", "pvc://a/digits-new")
SPEC = RolloutSpec.model_validate(
    {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
     "shadow": {"percent": 20, "duration": "5m", "minAgreement": 0.99},
     "analysis": {"interval": "30s"}}
)  # fmt: skip
SERVING_STABLE = {"stable": STABLE.revision, "stableUri": STABLE.uri}


def inputs(
    state: dict[str, Any] | ModelDeploymentStatus,
    serving: Serving,
    now: datetime,
    annotations: dict[str, str] | None = None,
    analysis: AnalysisResult | None = None,
    knative: bool = False,
) -> Inputs:
    return Inputs(SPEC, knative, NEW, stored(state), serving, annotations or {}, now, analysis)


def candidate(ready: bool = True, weight: int = 0) -> Serving:
    return Serving((100 - weight, weight), canary_ready=ready, canary_url="http://cand",
                   exists=True)  # fmt: skip


def state(decision: Any) -> ModelDeploymentStatus:
    return step(decision)


def shadow_numbers(agreement: float, compared: float = 400, errors: float = 0) -> ShadowResult:
    return ShadowResult(agreement, compared, compared * (1 - agreement), errors, 0.0, 1e-4, 3.0)


def shadowing() -> tuple[Any, datetime]:
    """A rollout whose shadow has just started: the decision and when."""
    d = decide(inputs({"revisions": SERVING_STABLE}, candidate(ready=False), T0))
    assert d.rollout is not None
    assert d.rollout.phase == "Shadowing"
    assert not d.shadow_on  # nothing to mirror to until the candidate is ready
    started = T0 + timedelta(seconds=20)
    d = decide(inputs(state(d), candidate(), started))
    return d, started


def test_a_rollout_with_a_shadow_starts_dark_and_mirrors_only_once_the_candidate_is_ready() -> None:
    d = decide(inputs({"revisions": SERVING_STABLE}, candidate(ready=False), T0))
    assert d.rollout is not None
    assert (d.canary_isvc, d.canary_weight) == (True, 0)  # deployed, with no traffic
    assert d.rollout.shadow.wire() == {"candidate": NEW.revision, "percent": 20, "active": False,
                                      "done": False}  # fmt: skip
    assert [e.reason for e in d.events] == ["RolloutStarted"]
    assert d.conditions[-1].reason == "Shadowing"
    assert "waiting for candidate" in d.conditions[-1].message
    d, started = shadowing()
    assert d.shadow_on
    assert d.canary_weight == 0
    assert d.rollout.shadow.active is True
    assert d.rollout.shadow.started_at == T0 + timedelta(seconds=20)
    assert [e.reason for e in d.events] == ["ShadowStarted"]
    assert "20% of its requests" in d.conditions[-1].message
    assert analysis_due(inputs(state(d), candidate(), started))


def test_a_shadow_that_agrees_to_its_end_hands_over_to_the_first_canary_step() -> None:
    d, started = shadowing()
    ok = AnalysisResult(at=started, passed=True, ready=True, shadow=shadow_numbers(0.998))
    d = decide(inputs(state(d), candidate(), started, analysis=ok))
    assert d.rollout.phase == "Shadowing"
    assert d.rollout.shadow.agreement == 0.998
    assert d.requeue_after == 30
    end = started + timedelta(minutes=5)
    assert not analysis_due(inputs(state(d), candidate(), started + timedelta(seconds=10)))
    assert analysis_due(inputs(state(d), candidate(), end))
    last = AnalysisResult(at=end, passed=True, ready=True, shadow=shadow_numbers(0.995))
    d = decide(inputs(state(d), candidate(), end, analysis=last))
    assert d.rollout.phase == "Progressing"
    assert d.rollout.step == 0
    assert d.rollout.shadow.done is True
    assert d.rollout.shadow.active is False
    assert not d.shadow_on  # mirroring stops as the canary gets real traffic
    assert d.canary_weight == 10
    assert [e.reason for e in d.events] == ["ShadowPassed"]
    assert "agreement 0.9950" in d.events[0].message


def test_a_shadow_below_min_agreement_rolls_back_before_any_user_traffic_moves() -> None:
    d, started = shadowing()
    bad = AnalysisResult(
        at=started + timedelta(seconds=30), passed=False, ready=True,
        failures=["shadow agreement 0.6200 over 400 compared requests is below minAgreement 0.99"],
        shadow=shadow_numbers(0.62),
    )  # fmt: skip
    d = decide(inputs(state(d), candidate(), bad.at, analysis=bad))
    assert d.rollout.phase == "RolledBack"
    assert d.revisions.failed == NEW.revision
    assert "before any user traffic moved" in d.rollout.failure
    assert "0.6200" in d.rollout.failure
    assert (d.canary_isvc, d.canary_weight) == (False, 0)
    assert d.traffic.canary == 0
    assert not d.shadow_on
    assert d.rollout.shadow.active is False
    assert d.rollout.shadow.agreement == 0.62


def test_a_shadow_without_evidence_pauses_and_resume_runs_it_again() -> None:
    d, started = shadowing()
    end = started + timedelta(minutes=5)
    empty = AnalysisResult(at=end, passed=False, ready=True,
                           inconclusive=["3 mirrored requests answered"])  # fmt: skip
    d = decide(inputs(state(d), candidate(), end, analysis=empty))
    assert d.rollout.phase == "Inconclusive"
    assert not d.shadow_on
    assert d.canary_weight == 0
    later = end + timedelta(minutes=1)
    d = decide(inputs(state(d), candidate(), later, {"modeldeploy.io/resume": "true"}))
    assert d.rollout.phase == "Shadowing"
    assert d.rollout.shadow.started_at == T0 + timedelta(minutes=6, seconds=20)  # a fresh clock
    assert d.shadow_on
    assert [e.reason for e in d.events] == ["RolloutResumed", "ShadowStarted"]


def test_promote_ends_the_shadow_early_and_pause_holds_it_at_its_end() -> None:
    d, started = shadowing()
    promoted = decide(inputs(state(d), candidate(), started, {"modeldeploy.io/promote": "step"}))
    assert promoted.rollout is not None
    assert promoted.rollout.phase == "Progressing"
    assert promoted.rollout.shadow.done is True
    assert "ShadowEnded" in [e.reason for e in promoted.events]
    end = started + timedelta(minutes=5)
    ok = AnalysisResult(at=end, passed=True, ready=True, shadow=shadow_numbers(1.0))
    held = decide(inputs(state(d), candidate(), end, {"modeldeploy.io/pause": "true"}, ok))
    assert held.rollout is not None
    assert held.rollout.phase == "Shadowing"
    assert "paused" in held.conditions[-1].message


def test_a_candidate_that_never_gets_ready_fails_the_shadow_at_the_progress_deadline() -> None:
    d = decide(inputs({"revisions": SERVING_STABLE}, candidate(ready=False), T0))
    late = T0 + timedelta(minutes=31)
    d = decide(inputs(state(d), candidate(ready=False), late))
    assert d.rollout is not None
    assert d.rollout.phase == "RolledBack"
    assert "progressDeadline" in d.rollout.failure


def test_a_shadow_needs_the_canary_strategy_and_the_runtime_that_mirrors() -> None:
    doc = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
           "metadata": {"name": "m"},
           "spec": {"model": {"uri": "s3://b/m.onnx", "format": "onnx",
                              "inputs": [{"name": "x", "shape": [3]}]},
                    "rollout": {"strategy": "immediate", "shadow": {}}}}  # fmt: skip
    problems = [str(p) for p in validate_document(doc)]
    assert any("shadow" in p and "strategy canary" in p for p in problems), problems
    doc["spec"]["rollout"] = {"shadow": {"duration": "48h"}}
    doc["spec"]["serving"] = {"runtime": "kserve-tritonserver"}
    problems = [str(p) for p in validate_document(doc)]
    assert any("spec.rollout.shadow.duration" in p for p in problems), problems
    assert any("spec.rollout.shadow" in p and "mirrors" in p for p in problems), problems


def deployment(**shadow: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "digits", "namespace": "team"},
         "spec": {"model": {"uri": "s3://b/m.onnx", "format": "onnx",
                            "inputs": [{"name": "x", "shape": [3]}]},
                  "optimization": {"parity": {"atol": 0.002, "rtol": 0.003}},
                  "rollout": {"shadow": shadow}}}
    )  # fmt: skip


def test_the_mirror_config_defaults_to_the_candidate_artifacts_parity_tolerances() -> None:
    md = deployment(percent=30, timeout="2s")
    assert md.spec.rollout.shadow is not None
    config = get_mirror_config(md, md.spec.rollout.shadow, "aaa", "bbb", "http://c")
    assert (config.atol, config.rtol, config.percent, config.timeout_seconds) == (
        0.002, 0.003, 30, 2.0)  # fmt: skip
    own = deployment(atol=0.5)
    assert own.spec.rollout.shadow is not None
    assert get_mirror_config(own, own.spec.rollout.shadow, "a", "b", "http://c").atol == 0.5
    config_map = get_shadow_config_map("digits", "team", "uid-1", config)
    assert config_map["metadata"]["name"] == "digits-shadow"
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    # What the operator writes is exactly what the runtime parses: one contract.
    parsed = mirror.MirrorConfig.model_validate_json(config_map["data"][mirror.FILE])
    assert parsed == config
    off = get_shadow_config_map("digits", "team", "uid-1", None)
    assert off["data"] == {mirror.FILE: "{}"}


def test_every_predictor_of_our_runtime_mounts_the_shadow_config_map_from_its_first_deploy() -> (
    None
):
    md = deployment()
    isvc = build_inference_service(md, "uid", "s3://b/a", ServingRuntimeRef("modeldeploy-onnx",
                                   "ClusterServingRuntime"), revision="aaaaaaaaaa")  # fmt: skip
    predictor = isvc["spec"]["predictor"]
    assert predictor["volumes"] == [{"name": mirror.VOLUME, "configMap": {
        "name": "digits-shadow", "optional": True}}]  # fmt: skip
    assert predictor["model"]["volumeMounts"] == [
        {"name": mirror.VOLUME, "mountPath": mirror.MOUNT_PATH, "readOnly": True}
    ]
    assert predictor["model"]["env"] == [{"name": mirror.REVISION_ENV, "value": "aaaaaaaaaa"}]
    triton = build_inference_service(md, "uid", "s3://b/a", ServingRuntimeRef(
        "kserve-tritonserver", "ClusterServingRuntime"))  # fmt: skip
    assert "volumes" not in triton["spec"]["predictor"]


def test_the_shadow_is_judged_on_stable_pods_counts_for_this_candidate_only() -> None:
    target = Target("team", "digits", "digits", 'bb"b', "aaa", "http://c", "s3://s", None, 90,
                    "modeldeploy-onnx", False)  # fmt: skip
    queries = shadow_queries(target)
    assert 'modeldeploy_revision="aaa"' in queries["outcomes"]
    assert 'candidate="bb\\"b"' in queries["outcomes"]  # escaped, never injected
    assert "[90s]" in queries["outcomes"]
    assert queries["outcomes"].startswith("sum by (outcome) (increase(")
    assert "modeldeploy_shadow_max_abs_diff" in queries["worst"]


def test_agreement_means_within_tolerance_and_the_same_top_class() -> None:
    stable = {"out": np.array([[0.1, 0.9], [0.6, 0.4]], dtype=np.float32)}
    close = {"out": stable["out"] + np.float32(1e-4)}
    assert compare(stable, close, 1e-3, 0, classifier=True).agree
    flipped = {"out": np.array([[0.1, 0.9], [0.49, 0.51]], dtype=np.float32)}
    result = compare(stable, flipped, 0.2, 0, classifier=True)
    assert not result.agree
    assert "top-1 class differs on 1 of 2" in result.why
    assert compare(stable, flipped, 0.2, 0, classifier=False).agree
    assert not compare(stable, {"out": stable["out"][:1]}, 1, 1, classifier=False).agree
    nan = {"out": np.full((2, 2), np.nan, dtype=np.float32)}
    assert not compare(stable, nan, 1e6, 1e6, classifier=False).agree  # NaN never agrees
    assert compare(stable, {"out": stable["out"] * 2}, 0, 0, False).max_abs_diff == pytest.approx(
        0.9, rel=1e-6
    )


def test_evidence_is_accepted_only_as_the_runtime_writes_it() -> None:
    arrays = {"out": np.ones((1, 2), dtype=np.float32)}
    good = evidence_npz(b'{"inputs": []}', 14, arrays, arrays,
                        [("x", "FP32", np.zeros((1, 3), dtype=np.float32))])  # fmt: skip
    check_evidence(good)
    pickled = io.BytesIO()
    np.savez(pickled, request=np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"not numeric|Object arrays"):
        check_evidence(pickled.getvalue())
    odd = io.BytesIO()
    np.savez(odd, request=np.zeros(1), **{"secrets": np.zeros(1)})
    with pytest.raises(ValueError, match="unexpected array"):
        check_evidence(odd.getvalue())
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("request.npy", b"\0" * (40 * 1024 * 1024))
    with pytest.raises(ValueError, match="expands"):
        check_evidence(bomb.getvalue())
    with pytest.raises(ValueError, match="not shadow evidence"):
        check_evidence(json.dumps({"evidence": []}).encode())


def test_status_shows_the_shadow_its_numbers_and_where_the_evidence_is() -> None:
    body = {
        "metadata": {"namespace": "team", "name": "digits"},
        "spec": {"rollout": {"steps": [{"weight": 10}]}},
        "status": {
            "revisions": {"stable": "aaa", "canary": "bbb"},
            "rollout": {
                "phase": "RolledBack",
                "shadow": {
                    "candidate": "bbb",
                    "percent": 20,
                    "startedAt": "2026-11-30T12:00:00Z",
                    "agreement": 0.62,
                    "compared": 400,
                    "errors": 3,
                    "maxAbsDiff": 2.5,
                    "evidence": ["pvc://s/team/.shadow/digits/bbb/0123456789abcdef.npz"],
                },
            },
        },
    }
    text = describe(body)
    assert (
        "shadow:    off, 20% of stable's requests to bbb; agreement 0.6200 over 400, 3 errors, worst |Δ| 2.5"
        in text
    )
    assert "evidence:  pvc://s/team/.shadow/digits/bbb/0123456789abcdef.npz" in text
