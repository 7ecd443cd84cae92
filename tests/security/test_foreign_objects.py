"""The operator never takes over, overwrites or deletes an object it does not own (issue 16,
item 7; issue 14): someone else's InferenceService under a ModelDeployment's name stays as it
is, and the ModelDeployment says whose it is."""

from __future__ import annotations

import time
from typing import Any

from tests.operator.conftest import ISVC, Kube, digits_spec


def test_a_foreign_inference_service_under_our_name_is_reported_and_left_untouched(
    kube: Kube, start_operator: Any, namespace: str
) -> None:
    theirs = kube.custom.create_namespaced_custom_object(
        *ISVC[:2], namespace, ISVC[2],
        {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
         "metadata": {"name": "digits"},
         "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"},
                                          "storageUri": "s3://their-bucket/model"}}}},
    )  # fmt: skip
    start_operator()
    kube.create("digits", digits_spec())
    ready = kube.wait_condition("digits", "Ready", "False", "NameConflict", timeout=60)
    assert ready["message"].startswith(
        f"InferenceService {namespace}/digits belongs to no owner (made by hand?)"
    )
    time.sleep(3)  # a few more reconciliations: still nothing done to it, nothing staged
    after = kube.isvc("digits")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    assert after["spec"]["predictor"]["model"]["storageUri"] == "s3://their-bucket/model"
    assert "ownerReferences" not in after["metadata"]
    assert kube.jobs("digits") == []
    assert kube.condition("digits", "Deployed")["status"] == "False"
