"""The operator's memory of ModelDeployments and InferenceServices (``controller/bodies.py``)."""

from __future__ import annotations

from typing import Any

from modeldeploy.controller.bodies import Bodies


def body(version: str, phase: str = "Staging") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "md",
            "resourceVersion": version,
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "status": {"phase": phase},
    }


def test_an_older_event_never_replaces_the_answer_to_a_newer_write() -> None:
    bodies = Bodies()
    bodies.put(body("120", "Ready"))
    bodies.put(body("99", "Staging"))  # a watch event from before our write, arriving late
    held = bodies.get("ns", "md")
    assert held is not None
    assert held["metadata"]["resourceVersion"] == "120"
    assert held["status"]["phase"] == "Ready"
    bodies.put(body("121", "Deployed"))
    assert (bodies.get("ns", "md") or {})["status"]["phase"] == "Deployed"


def test_resource_versions_that_are_not_numbers_always_replace() -> None:
    bodies = Bodies()
    bodies.put(body("b"))
    bodies.put(body("a", "Ready"))
    assert (bodies.get("ns", "md") or {})["metadata"]["resourceVersion"] == "a"


def test_managed_fields_are_not_kept_and_each_read_is_a_copy() -> None:
    bodies = Bodies()
    bodies.put(body("1"))
    first = bodies.get("ns", "md")
    assert first is not None
    assert "managedFields" not in first["metadata"]
    first["status"]["phase"] = "changed by a reconciliation"
    assert (bodies.get("ns", "md") or {})["status"]["phase"] == "Staging"


def test_a_forgotten_or_unknown_object_is_not_held() -> None:
    bodies = Bodies()
    bodies.put(body("1"))
    bodies.forget("ns", "md")
    assert bodies.get("ns", "md") is None
    assert bodies.get("ns", "other") is None
    assert len(bodies) == 0


def test_the_managed_fields_of_the_kept_manager_stay_so_a_dropped_field_is_still_seen() -> None:
    from modeldeploy.controller.naming import FIELD_MANAGER
    from modeldeploy.controller.reconcile import applied

    ours = {"manager": FIELD_MANAGER, "operation": "Apply",
            "fieldsV1": {"f:spec": {"f:predictor": {"f:canaryTrafficPercent": {}}}}}  # fmt: skip
    theirs = {"manager": "kserve", "operation": "Update", "fieldsV1": {"f:status": {}}}
    live = {"metadata": {"namespace": "ns", "name": "isvc", "resourceVersion": "3",
                         "managedFields": [ours, theirs]},
            "spec": {"predictor": {"canaryTrafficPercent": 50}}}  # fmt: skip
    bodies = Bodies(keep_manager=FIELD_MANAGER)
    bodies.put(live)
    held = bodies.get("ns", "isvc")
    assert held is not None
    assert held["metadata"]["managedFields"] == [ours]
    # A promotion drops canaryTrafficPercent: memory still says the apply must be sent.
    assert applied(held, {"spec": {"predictor": {}}}) is False
    assert applied(held, {"spec": {"predictor": {"canaryTrafficPercent": 50}}}) is True
