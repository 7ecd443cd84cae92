"""The rollout's pure parts without a cluster: the state machine, reading KServe's traffic and the
HTTPRoute back, the route builder, the analysis queries, the status patch and the CLI's text.
The same behaviour runs end to end in tests/operator/test_canary.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ObjectMeta
from modeldeploy.api.rollout import RolloutSpec
from modeldeploy.api.status import ModelDeploymentStatus, Traffic
from modeldeploy.controller import metric_sources, naming
from modeldeploy.controller.analysis import builtin_queries, custom_query, run_checks
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.prometheus_client import PrometheusClient
from modeldeploy.controller.rollout import (
    AnalysisResult,
    Artifact,
    Inputs,
    Serving,
    Target,
    analysis_due,
    decide,
    scale_down_wait,
)
from modeldeploy.controller.route import Backends, build_http_route, route_weights
from modeldeploy.controller.serving_state import knative_serving, standard_serving
from modeldeploy.controller.status_patch import merge_patch
from modeldeploy.rollout_control import describe
from modeldeploy.runtime.errors import Outcome

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STABLE = Artifact("aaaaaaaaaa", "pvc://a/digits-old")
NEW = Artifact("bbbbbbbbbb", "pvc://a/digits-new")
SPEC = RolloutSpec.model_validate(
    {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
     "analysis": {"interval": "20s", "failureLimit": 1}}
)  # fmt: skip
SERVING_STABLE = {"stable": STABLE.revision, "stableUri": STABLE.uri}


def inputs(
    status: dict[str, Any],
    serving: Serving,
    now: datetime = T0,
    annotations: dict[str, str] | None = None,
    analysis: AnalysisResult | None = None,
    spec: RolloutSpec = SPEC,
    knative: bool = True,
) -> Inputs:
    return Inputs(spec, knative, NEW, stored(status), serving, annotations or {}, now, analysis)


def canary(weight: int, ready: bool = True) -> Serving:
    return Serving((100 - weight, weight), canary_ready=ready, canary_url="http://c", exists=True)


def stored(status: dict[str, Any] | ModelDeploymentStatus) -> ModelDeploymentStatus:
    """A status as the API server would hand it back (the wire form, parsed)."""
    if isinstance(status, ModelDeploymentStatus):
        status = status.wire()
    return ModelDeploymentStatus.model_validate(status)


def step(decision: Any) -> ModelDeploymentStatus:
    """The status the decision writes, as the next reconciliation reads it back."""
    return stored(ModelDeploymentStatus(revisions=decision.revisions, rollout=decision.rollout))


def test_first_deployment_has_no_rollout() -> None:
    d = decide(Inputs(SPEC, True, NEW, stored({}), Serving((100, 0)), {}, T0))
    assert d.revisions.wire() == {"stable": NEW.revision, "stableUri": NEW.uri}
    assert d.canary_percent is None
    assert d.knative_uri == NEW.uri
    assert d.rollout is None


def test_a_new_artifact_walks_the_steps_with_analysis_then_promotes() -> None:
    # Start: the canary revision is applied at 0% until it is ready.
    d = decide(inputs({"revisions": SERVING_STABLE}, canary(0, ready=False)))
    assert d.rollout is not None
    assert d.rollout.phase == "Progressing"
    assert d.revisions.canary == NEW.revision
    assert (d.knative_uri, d.canary_percent) == (NEW.uri, 0)
    assert [e.reason for e in d.events] == ["RolloutStarted"]
    # Ready: the step's weight is set; its clock starts only once the weight is read back.
    d = decide(inputs(step(d), canary(0), T0 + timedelta(seconds=5)))
    assert d.canary_percent == 10
    assert d.rollout.step_started_at is None
    d = decide(inputs(step(d), canary(10), T0 + timedelta(seconds=6)))
    assert d.rollout.step_started_at == T0 + timedelta(seconds=6)
    assert [e.reason for e in d.events] == ["CanaryStep"]
    started = T0 + timedelta(seconds=6)
    # Analysis is due at once, then every interval, and once more at the pause's end.
    assert analysis_due(inputs(step(d), canary(10), started))
    ok = AnalysisResult(at=started, passed=True, ready=True, error_rate=0.0, requests=12)
    d = decide(inputs(step(d), canary(10), started, analysis=ok))
    assert d.rollout.analysis.requests == 12
    assert not analysis_due(inputs(step(d), canary(10), started + timedelta(seconds=10)))
    assert analysis_due(inputs(step(d), canary(10), started + timedelta(seconds=20)))
    end = started + timedelta(minutes=1)
    late = AnalysisResult(at=end, passed=True, ready=True)
    d = decide(inputs(step(d), canary(10), end, analysis=late))
    assert d.rollout.step == 1
    assert d.canary_percent == 50
    # Step 2, then Promoting: no canaryTrafficPercent; then Promoted once all traffic is on it.
    d = decide(inputs(step(d), canary(50), end))
    second = end
    final = AnalysisResult(at=second + timedelta(minutes=1), passed=True, ready=True)
    d = decide(inputs(step(d), canary(50), second + timedelta(minutes=1), analysis=final))
    assert d.rollout.phase == "Promoting"
    assert d.canary_percent is None
    promoted = Serving((0, 100), canary_ready=True, stable_settled_on=NEW.uri, exists=True)
    d = decide(inputs(step(d), promoted, second + timedelta(minutes=1, seconds=2)))
    assert d.rollout.phase == "Promoted"
    assert d.revisions.wire() == {"stable": NEW.revision, "stableUri": NEW.uri}
    assert d.traffic.wire() == {"stable": 100, "canary": 0, "split": "100/0"}
    assert [e.reason for e in d.events] == ["RolloutPromoted"]


def progressing(weight_step: int = 0, started: datetime = T0) -> dict[str, Any]:
    return {
        "revisions": {**SERVING_STABLE, "canary": NEW.revision, "canaryUri": NEW.uri},
        "rollout": {"phase": "Progressing", "step": weight_step, "startedAt": "2026-11-23T12:00:00Z",
                    "stepStartedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "failedChecks": 0},
    }  # fmt: skip


def test_a_steps_first_analysis_runs_as_its_weight_reads_back_and_starts_its_clock() -> None:
    # One status write for the step's start and its first numbers, not one each.
    state = progressing()
    del state["rollout"]["stepStartedAt"]
    assert not analysis_due(inputs(state, canary(0), T0 + timedelta(seconds=5)))  # not yet at 10%
    assert analysis_due(inputs(state, canary(10), T0 + timedelta(seconds=5)))
    paused = {naming.PAUSE_ANNOTATION: "true"}
    assert not analysis_due(inputs(state, canary(10), T0 + timedelta(seconds=5), paused))
    first = AnalysisResult(at=T0 + timedelta(seconds=5, microseconds=400_000), passed=True,
                           ready=True, requests=3)  # fmt: skip
    d = decide(inputs(state, canary(10), T0 + timedelta(seconds=6), analysis=first))
    assert d.rollout is not None
    assert d.rollout.step_started_at == T0 + timedelta(seconds=5)
    assert d.rollout.analysis is not None
    assert d.rollout.analysis.requests == 3
    assert [e.reason for e in d.events] == ["CanaryStep"]
    # The clock runs: the next run is due an interval after the first, not at once.
    assert not analysis_due(inputs(step(d), canary(10), T0 + timedelta(seconds=15)))
    assert analysis_due(inputs(step(d), canary(10), T0 + timedelta(seconds=26)))


def test_failures_within_the_limit_hold_then_roll_back_with_the_numbers() -> None:
    bad = AnalysisResult(at=T0 + timedelta(seconds=1), passed=False, ready=True, error_rate=0.3,
                         failures=["error rate 0.3000 > max 0.01"])  # fmt: skip
    d = decide(inputs(progressing(), canary(10), T0 + timedelta(seconds=1), analysis=bad))
    assert d.rollout.phase == "Progressing"
    assert d.rollout.failed_checks == 1  # failureLimit 1 tolerates one
    bad2 = AnalysisResult(at=T0 + timedelta(seconds=21), passed=False, ready=True, error_rate=0.4,
                          failures=["error rate 0.4000 > max 0.01"])  # fmt: skip
    d = decide(inputs(step(d), canary(10), T0 + timedelta(seconds=21), analysis=bad2))
    assert d.rollout.phase == "RolledBack"
    assert "error rate 0.4000" in d.rollout.failure
    assert d.revisions.wire() == {**SERVING_STABLE, "failed": NEW.revision, "canaryUri": NEW.uri}
    assert (d.knative_uri, d.canary_percent) == (NEW.uri, 0)
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "RolloutRolledBack")]
    # Later looks keep it at 0% while the spec is unchanged, with no new Events.
    again = decide(inputs(step(d), canary(0), T0 + timedelta(minutes=5)))
    assert again.canary_percent == 0
    assert again.events == []
    assert again.rollout.phase == "RolledBack"


def test_without_auto_rollback_a_failure_holds_the_weights() -> None:
    spec = SPEC.model_copy(update={"auto_rollback": False})
    bad = AnalysisResult(at=T0, passed=False, ready=True, failures=["p99 latency 900 ms > 100"])
    state = progressing()
    state["rollout"]["failedChecks"] = 1
    d = decide(inputs(state, canary(10), T0, analysis=bad, spec=spec))
    assert d.rollout.phase == "Failed"
    assert d.canary_percent == 10
    assert [e.reason for e in d.events] == ["RolloutFailed"]
    aborted = decide(inputs(step(d), canary(10), T0, {naming.ABORT_ANNOTATION: "true"}, spec=spec))
    assert aborted.rollout.phase == "Aborted"
    assert aborted.clear_annotations == [naming.ABORT_ANNOTATION]


def test_a_canary_that_cannot_start_fails_at_once_or_at_the_deadline() -> None:
    broken = Serving((100, 0), canary_failed="RevisionFailed: self-test failed", exists=True)
    d = decide(inputs(progressing(), broken))
    assert d.rollout.phase == "RolledBack"
    assert "self-test failed" in d.rollout.failure
    slow = decide(inputs(progressing(), canary(0, ready=False), T0 + timedelta(minutes=29)))
    assert slow.rollout.phase == "Progressing"
    late = decide(inputs(progressing(), canary(0, ready=False), T0 + timedelta(minutes=31)))
    assert "progressDeadline" in late.rollout.failure


def test_pause_freezes_and_resume_restarts_the_step() -> None:
    paused = {naming.PAUSE_ANNOTATION: "true"}
    d = decide(inputs(progressing(), canary(10), T0 + timedelta(hours=1), paused))
    assert d.rollout.phase == "Paused"
    assert d.canary_percent == 10
    assert not analysis_due(inputs(step(d), canary(10), T0 + timedelta(hours=2), paused))
    # Resumed: the step starts again, with an analysis at once (not an interval later).
    assert analysis_due(inputs(step(d), canary(10), T0 + timedelta(hours=2)))
    resumed = decide(inputs(step(d), canary(10), T0 + timedelta(hours=2)))
    assert resumed.rollout.phase == "Progressing"
    assert resumed.rollout.step_started_at == T0 + timedelta(hours=2)


def test_promote_annotation_skips_the_steps_and_is_cleared() -> None:
    d = decide(inputs(progressing(), canary(10), T0, {naming.PROMOTE_ANNOTATION: ""}))
    assert d.rollout.phase == "Promoting"
    assert d.clear_annotations == [naming.PROMOTE_ANNOTATION]
    assert d.canary_percent is None


def test_promote_step_ends_the_current_step_and_the_last_one_promotes() -> None:
    step_promote = {naming.PROMOTE_ANNOTATION: naming.PROMOTE_STEP}
    d = decide(inputs(progressing(), canary(10), T0 + timedelta(seconds=5), step_promote))
    assert d.rollout.phase == "Progressing"
    assert d.rollout.step == 1
    assert d.rollout.step_started_at is None
    assert d.canary_percent == 50  # the next step's weight, not promotion
    assert d.clear_annotations == [naming.PROMOTE_ANNOTATION]
    assert [e.message for e in d.events] == ["step 1 ended by annotation; step 2/2 next"]
    # On the last step, the same command promotes.
    d = decide(inputs(progressing(1), canary(50), T0 + timedelta(seconds=5), step_promote))
    assert d.rollout.phase == "Promoting"
    assert d.canary_percent is None


def test_promote_step_moves_an_inconclusive_step_on() -> None:
    state = progressing()
    state["rollout"].update(phase="Inconclusive", inconclusive="no canary requests")
    step_promote = {naming.PROMOTE_ANNOTATION: naming.PROMOTE_STEP}
    d = decide(inputs(state, canary(10), T0, step_promote))
    assert d.rollout.phase == "Progressing"
    assert d.rollout.step == 1
    assert d.rollout.inconclusive is None


def test_retry_rolls_a_failed_revision_out_again_from_the_first_step() -> None:
    failed = {
        "revisions": {**SERVING_STABLE, "failed": NEW.revision, "canaryUri": NEW.uri},
        "rollout": {"phase": "RolledBack", "step": 1, "failure": "analysis failed"},
    }
    # Without a command the failed revision gets no traffic, however often it is reconciled.
    held = decide(inputs(failed, canary(0), T0))
    assert held.revisions.failed == NEW.revision
    assert held.canary_percent == 0
    # A one-step promote does not bring it back either: only retry or promote --full do.
    stepped = decide(
        inputs(failed, canary(0), T0, {naming.PROMOTE_ANNOTATION: naming.PROMOTE_STEP})
    )
    assert stepped.revisions.failed == NEW.revision
    d = decide(inputs(failed, canary(0), T0, {naming.RETRY_ANNOTATION: "true"}))
    assert d.revisions.canary == NEW.revision
    assert d.revisions.failed is None
    assert d.rollout.phase == "Progressing"
    assert d.rollout.step == 0
    assert d.rollout.failure is None
    assert [e.reason for e in d.events] == ["RolloutRetried", "RolloutStarted"]
    assert d.clear_annotations == [naming.RETRY_ANNOTATION]


def test_spec_back_on_stable_holds_the_old_revision_until_the_new_one_is_ready() -> None:
    failed = {"revisions": {**SERVING_STABLE, "failed": NEW.revision, "canaryUri": NEW.uri},
              "rollout": {"phase": "RolledBack"}}  # fmt: skip
    back = Inputs(SPEC, True, STABLE, stored(failed), Serving((100, 0), exists=True), {}, T0)
    d = decide(back)
    assert (d.knative_uri, d.canary_percent) == (STABLE.uri, 0)  # not the failed revision
    assert d.revisions.wire() == SERVING_STABLE
    settled = Serving((100, 0), latest_ready_uri=STABLE.uri, stable_settled_on=STABLE.uri,
                      exists=True)  # fmt: skip
    d = decide(Inputs(SPEC, True, STABLE, step(d), settled, {}, T0))
    assert d.canary_percent is None


def test_standard_mode_uses_a_canary_service_and_route_and_promotes_through_it() -> None:
    d = decide(inputs(progressing(), canary(0), knative=False))
    assert (d.canary_isvc, d.route, d.canary_weight) == (True, True, 10)
    assert d.stable_uri == STABLE.uri
    state = progressing(1)
    done = AnalysisResult(at=T0 + timedelta(minutes=1), passed=True, ready=True)
    d = decide(inputs(state, canary(50), T0 + timedelta(minutes=1), analysis=done, knative=False))
    assert d.rollout.phase == "Promoting"
    assert (d.stable_uri, d.canary_weight, d.canary_isvc) == (NEW.uri, 100, True)
    rolled = Serving((0, 100), canary_ready=True, stable_settled_on=NEW.uri, exists=True)
    d = decide(inputs(step(d), rolled, knative=False))
    assert d.rollout.phase == "Promoted"
    assert (d.canary_isvc, d.route, d.canary_weight) == (False, True, 0)


def test_knative_traffic_is_read_back_from_kserves_status() -> None:
    isvc = {
        "metadata": {"generation": 3},
        "spec": {"predictor": {"model": {"storageUri": NEW.uri}, "canaryTrafficPercent": 10}},
        "status": {"observedGeneration": 3, "components": {"predictor": {
            "latestCreatedRevision": "d-00002", "latestReadyRevision": "d-00002",
            "traffic": [{"revisionName": "d-00002", "percent": 10, "latestRevision": True,
                         "tag": "latest", "url": "http://latest-d"},
                        {"revisionName": "d-00001", "percent": 90, "latestRevision": False}]}}},
    }  # fmt: skip
    serving = knative_serving(isvc, NEW.uri)
    assert serving.weights == (90, 10)
    assert serving.canary_ready
    assert serving.canary_url == "http://latest-d"
    # A status from before the last spec change says nothing about the canary.
    stale = {**isvc, "metadata": {"generation": 4}}
    assert knative_serving(stale, NEW.uri).weights == (100, 0)
    assert not knative_serving(stale, NEW.uri).canary_ready


def digits() -> ModelDeployment:
    """A Standard-mode deployment ``ml/digits``, for its route."""
    return ModelDeployment(metadata=ObjectMeta(name="digits", namespace="ml"),
                           spec=ModelDeploymentSpec.model_validate(
                               {"model": {"uri": "pvc://m/x.onnx", "format": "onnx",
                                          "inputs": [{"name": "x", "shape": [4]}]}}))  # fmt: skip


def test_standard_serving_reads_the_route_and_both_services() -> None:
    deployment = digits()
    route = build_http_route(deployment, "uid", OperatorConfig(), 30, with_canary=True)
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("digits-predictor", 70), ("digits-canary-predictor", 30)]  # fmt: skip
    assert route["spec"]["hostnames"] == ["digits.ml.example.com"]
    assert route["spec"]["parentRefs"][0]["namespace"] == "kserve"
    assert route_weights(route, Backends.separate("digits")) == (70, 30)

    def ready(uri: str) -> dict[str, Any]:
        return {"metadata": {"generation": 1}, "spec": {"predictor": {"model": {"storageUri": uri}}},
                "status": {"observedGeneration": 1, "url": "http://c",
                           "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip

    serving = standard_serving(ready(STABLE.uri), ready(NEW.uri), route, NEW.uri, "digits")
    assert serving.weights == (70, 30)
    assert serving.canary_ready
    # Ready alone does not say the stable pods serve an artifact: KServe stays Ready through a
    # rolling update. The predictor Deployment's finished rollout of the revision does.
    assert serving.stable_settled_on is None

    def predictor(revision: str, updated: int) -> dict[str, Any]:
        return {"metadata": {"generation": 2},
                "spec": {"replicas": 1, "template": {"metadata": {"labels": {
                    naming.REVISION_LABEL: revision}}}},
                "status": {"observedGeneration": 2, "updatedReplicas": updated,
                           "availableReplicas": 1}}  # fmt: skip

    revisions = {STABLE.uri: STABLE.revision, NEW.uri: NEW.revision}
    for rolled, settled in ((predictor(STABLE.revision, 1), STABLE.uri),
                                (predictor(STABLE.revision, 0), None),
                                (predictor(NEW.revision, 1), None)):  # fmt: skip
        found = standard_serving(ready(STABLE.uri), None, route, NEW.uri, "digits", rolled,
                                 revisions)  # fmt: skip
        assert found.stable_settled_on == settled
    alone = build_http_route(deployment, "uid", OperatorConfig(), 0, with_canary=False)
    assert route_weights(alone, Backends.separate("digits")) == (100, 0)


def test_analysis_queries_select_the_revisions_and_thresholds_fail_with_numbers() -> None:
    target = Target("ml", "digits", "digits", NEW.revision, STABLE.revision, None, "pvc://a",
                    None, 90, "modeldeploy-onnx", False)  # fmt: skip
    queries = builtin_queries(metric_sources.OURS, target)
    assert f'modeldeploy_revision="{NEW.revision}"' in queries["errors"]
    assert "[90s]" in queries["p99"]
    assert f'modeldeploy_revision="{STABLE.revision}"' in queries["stable_p99"]
    assert custom_query('x{r="{{canary}}",ns="{{namespace}}"}[{{window}}]', target) == (
        f'x{{r="{NEW.revision}",ns="ml"}}[90s]'
    )
    spec = SPEC.analysis.model_copy(update={"max_p99_latency_ms": 50.0, "live_parity": False})
    result = run_checks(spec, target, prometheus=None, timeout=1, now=T0)
    assert not result.passed
    assert "no Prometheus is configured" in result.failures[0]
    # Prometheus down says nothing about the canary: no verdict, and no pass either.
    unreachable = run_checks(spec, target, PrometheusClient("http://127.0.0.1:9"), 1, T0)
    assert not unreachable.passed
    assert unreachable.failures == []
    assert "prometheus at http://127.0.0.1:9" in unreachable.inconclusive[0]


def test_client_errors_are_never_canary_errors_in_any_runtimes_queries() -> None:
    sel = metric_sources.selector("ml", "digits", NEW.revision)
    ours = metric_sources.for_runtime("modeldeploy-onnx", knative=False)
    assert ours is metric_sources.for_runtime("modeldeploy-onnx", knative=True)
    assert ours is not None
    assert 'outcome=~"success|error|overloaded|timeout"' in ours.served.format(sel=sel, window="5s")
    assert 'outcome=~"error|overloaded|timeout"' in ours.errors.format(sel=sel, window="5s")
    assert ours.client_errors is not None
    assert 'outcome="invalid"' in ours.client_errors
    # Every outcome the runtime counts is served or the client's, and only "invalid" is both
    # left out of the served and kept out of the errors.
    served = ours.served.split('outcome=~"')[1].split('"')[0].split("|")
    assert sorted([*served, "invalid"]) == sorted(o.value for o in Outcome)
    triton = metric_sources.for_runtime("kserve-tritonserver", knative=False)
    assert triton is not None
    assert triton.p99_ms is None  # Triton exports no histogram
    assert triton.client_errors is None  # nor counts what it refuses before the model
    assert "nv_inference_request_failure" in triton.errors
    assert 'reason!="CANCELED"' in triton.errors
    in_knative = metric_sources.for_runtime("kserve-tritonserver", knative=True)
    assert in_knative is not None
    assert in_knative.errors == triton.errors  # Triton's own counters in either mode,
    assert in_knative.p99_ms is not None
    assert "revision_app_request_latencies_bucket" in in_knative.p99_ms  # latency from Knative
    proxy = metric_sources.for_runtime("kserve-sklearnserver", knative=True)
    assert proxy is not None
    assert 'response_code_class!="4xx"' in proxy.served
    assert 'response_code_class="5xx"' in proxy.errors
    assert proxy.client_errors is not None
    assert 'response_code_class="4xx"' in proxy.client_errors
    assert metric_sources.for_runtime("kserve-sklearnserver", knative=False) is None
    # The canary's client errors are compared with stable's over the same window.
    target = Target("ml", "digits", "digits", NEW.revision, STABLE.revision, None, "pvc://a",
                    None, 60, "modeldeploy-onnx", False)  # fmt: skip
    queries = builtin_queries(ours, target)
    assert f'modeldeploy_revision="{STABLE.revision}"' in queries["stable_client_errors"]
    assert "[60s]" in queries["stable_requests"]


def test_a_step_that_ends_without_evidence_pauses_inconclusive_until_resume_or_abort() -> None:
    thin = AnalysisResult(at=T0 + timedelta(seconds=10), passed=False, ready=True, requests=3,
                          inconclusive=["3 canary requests in the last 10s, fewer than "
                                        "minRequests 10"])  # fmt: skip
    # Before the step's end, too little evidence is no failure: the step goes on.
    d = decide(inputs(progressing(), canary(10), T0 + timedelta(seconds=10), analysis=thin))
    assert d.rollout.phase == "Progressing"
    assert d.rollout.failed_checks == 0
    assert d.rollout.analysis.inconclusive == thin.inconclusive
    # At the end, with still no evidence: paused, neither promoted nor rolled back.
    end = T0 + timedelta(minutes=1)
    late = AnalysisResult(at=end, passed=False, ready=True, requests=4,
                          inconclusive=["4 canary requests ..."])  # fmt: skip
    d = decide(inputs(step(d), canary(10), end, analysis=late))
    assert d.rollout.phase == "Inconclusive"
    assert d.rollout.step == 0
    assert d.canary_percent == 10
    assert "4 canary requests" in d.rollout.inconclusive
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "RolloutInconclusive")]
    progressing_condition = d.conditions[-1]
    assert progressing_condition.reason == "Inconclusive"
    assert "modeldeploy resume" in progressing_condition.message
    # Time alone changes nothing, and no analysis runs while it waits.
    held = decide(inputs(step(d), canary(10), end + timedelta(hours=1)))
    assert held.rollout.phase == "Inconclusive"
    assert held.events == []
    assert not analysis_due(inputs(step(held), canary(10), end + timedelta(hours=1)))
    # resume retries the step from a fresh clock; the annotation is cleared.
    retry = {naming.RESUME_ANNOTATION: "true"}
    later = end + timedelta(hours=2)
    resumed = decide(inputs(step(held), canary(10), later, retry))
    assert resumed.rollout.phase == "Progressing"
    assert resumed.rollout.step_started_at == T0 + timedelta(hours=2, minutes=1)
    assert resumed.rollout.inconclusive is None
    assert resumed.clear_annotations == [naming.RESUME_ANNOTATION]
    assert "RolloutResumed" in [e.reason for e in resumed.events]
    # abort rolls an inconclusive step back.
    aborted = decide(inputs(step(held), canary(10), later, {naming.ABORT_ANNOTATION: "true"}))
    assert aborted.rollout.phase == "Aborted"
    assert aborted.canary_percent == 0


def test_a_failure_found_beside_missing_evidence_still_counts() -> None:
    mixed = AnalysisResult(at=T0 + timedelta(seconds=1), passed=False, ready=True,
                           failures=["live parity: output max |Δ| 1 > atol"],
                           inconclusive=["query q: no data"])  # fmt: skip
    d = decide(inputs(progressing(), canary(10), T0 + timedelta(seconds=1), analysis=mixed))
    assert d.rollout.failed_checks == 1


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"r": {"step": 0, "stepStartedAt": "t"}}, {"r": {"step": 1}},
         {"r": {"step": 1, "stepStartedAt": None}}),
        ({"c": [1, 2]}, {"c": [3]}, {"c": [3]}),
        ({"r": {"phase": "P", "n": 1}, "u": "x"}, {"r": {"phase": "P", "n": 2}, "u": "x"},
         {"r": {"n": 2}}),
        ({"r": {"phase": "P"}, "z": None}, {"r": {"phase": "P"}, "z": None}, {}),
        ({}, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ],
)  # fmt: skip
def test_status_patch_carries_only_what_changed_and_removes_what_the_plan_dropped(
    old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert merge_patch(old, new) == patch


def test_status_command_prints_step_weights_and_numbers() -> None:
    body = {
        "metadata": {"name": "digits", "namespace": "ml",
                     "annotations": {naming.PAUSE_ANNOTATION: "true"}},
        "spec": {"rollout": {"steps": [{"weight": 10}, {"weight": 50}]}},
        "status": {**progressing(1), "traffic": {"stable": 50, "canary": 50}},
    }  # fmt: skip
    body["status"]["rollout"].update(
        phase="Paused",
        analysis={"at": "2026-11-23T12:01:00Z", "passed": True, "ready": True},
        lastAnalysis="error rate 0.0000",
    )
    text = describe(body)
    assert "Paused, step 2/2 (target 50%)" in text
    assert "stable 50%, canary 50%" in text
    assert "passed at 2026-11-23T12:01:00Z: error rate 0.0000" in text
    assert "modeldeploy.io/pause=true" in text
    assert "gateway" not in text  # no canary pods waiting for a scale-down
    body["status"]["traffic"]["gateway"] = {"generation": 7, "since": "2026-11-23T12:02:00Z"}
    assert "serves route generation 7 since 2026-11-23T12:02:00Z" in describe(body)


def accepted(route: dict[str, Any], generation: int, *observed: int) -> dict[str, Any]:
    """``route`` at ``generation``, with one gateway parent per ``observed`` generation that
    gateway last accepted."""
    conditions = [
        [{"type": "Accepted", "status": "True", "observedGeneration": g}] for g in observed
    ]
    return {**route, "metadata": {**route["metadata"], "generation": generation},
            "status": {"parents": [{"conditions": c} for c in conditions]}}  # fmt: skip


def test_a_route_is_served_once_every_gateway_accepted_its_generation() -> None:
    deployment = digits()
    route = build_http_route(deployment, "uid", OperatorConfig(), 0, with_canary=False)
    isvc = {"spec": {"predictor": {"model": {"storageUri": STABLE.uri}}}}
    canary_isvc = {"spec": {"predictor": {"model": {"storageUri": NEW.uri}}}}

    def served(route: dict[str, Any], canary: dict[str, Any] | None = canary_isvc) -> int | None:
        return standard_serving(isvc, canary, route, NEW.uri, "digits").accepted_route

    assert served(accepted(route, 4, 4, 4)) == 4
    assert served(accepted(route, 4, 4, 3)) is None  # one gateway is a generation behind
    unreported = {**route, "metadata": {**route["metadata"], "generation": 2}}
    assert served(unreported) == 2  # no gateway reports on it
    assert served(accepted(route, 4, 4), canary=None) is None  # no canary pods to keep
    rejected = accepted(route, 4, 4)
    rejected["status"]["parents"][0]["conditions"][0]["status"] = "False"
    assert served(rejected) is None


def test_the_gateways_serving_since_is_stamped_once_per_route_generation() -> None:
    """``status.traffic.gateway`` starts a scale-down delay: stamped at the first look that
    finds the route's generation accepted, kept while it stays the same, restarted by a new
    one, and absent while a gateway is behind (or in Knative mode, which has no route)."""

    def looked(status: dict[str, Any], generation: int | None, now: datetime) -> Any:
        serving = Serving((100, 0), exists=True, accepted_route=generation)
        return decide(inputs(status, serving, now, knative=False)).traffic.gateway

    first = looked(progressing(), 4, T0)
    assert (first.generation, first.since) == (4, T0)
    later = {**progressing(), "traffic": {"gateway": first.wire()}}
    assert looked(later, 4, T0 + timedelta(seconds=20)) == first
    assert looked(later, 5, T0 + timedelta(seconds=20)).since == T0 + timedelta(seconds=20)
    assert looked(later, None, T0 + timedelta(seconds=20)) is None
    serving = Serving((100, 0), exists=True, accepted_route=4)
    assert decide(inputs(later, serving, T0, knative=True)).traffic.gateway is None
    assert scale_down_wait(Traffic(gateway=first), T0 + timedelta(seconds=20), 30) == 10
    assert scale_down_wait(Traffic(gateway=first), T0 + timedelta(seconds=40), 30) == 0
    assert scale_down_wait(Traffic(), T0, 0) is None


def test_a_promoted_knative_rollout_never_pins_traffic_back_while_kserve_has_not_reported() -> None:
    # Promoted: the latest revision serves the new artifact and took all traffic. A status that
    # lags the spec for a moment (observedGeneration behind: latest_ready_uri unknown) is no
    # reason to hold the previous revision with canaryTrafficPercent 0, which would serve the
    # old model until the next look.
    promoted = {"revisions": {"stable": NEW.revision, "stableUri": NEW.uri},
                "rollout": {"phase": "Promoted"}}  # fmt: skip
    lagging = Serving((100, 0), exists=True)
    d = decide(Inputs(SPEC, True, NEW, stored(promoted), lagging, {}, T0))
    assert d.rollout is not None
    assert d.rollout.phase == "Promoted"
    assert (d.knative_uri, d.canary_percent) == (NEW.uri, None)
    # Back on stable after a rollback, the same lag still holds the old revision (the latest
    # one may be the failed canary).
    rolled_back = {"revisions": {**SERVING_STABLE, "failed": NEW.revision, "canaryUri": NEW.uri},
                   "rollout": {"phase": "RolledBack"}}  # fmt: skip
    d = decide(Inputs(SPEC, True, STABLE, stored(rolled_back), lagging, {}, T0))
    assert (d.knative_uri, d.canary_percent) == (STABLE.uri, 0)
