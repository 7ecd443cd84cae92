"""In a cluster, ``file://`` would make the staging pod read its own filesystem: a
``labelsUri`` of ``file:///proc/self/environ`` returns the pod's environment, the store's S3
keys included, as "labels" (issue 16). The operator refuses every such source before it creates
anything; ``modeldeploy stage`` on a laptop still takes them."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.controller.reconcile import plan
from tests.security.plans import refused_before_anything
from tests.unit.test_controller import CONFIG, NOW, body_of, example, observed


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("spec.model.uri", {"uri": "file:///etc/passwd"}),
        ("spec.model.postprocessing.classification.labelsUri",
         {"postprocessing": {"type": "classification",
                             "classification": {"labelsUri": "file:///proc/self/environ"}}}),
    ],
)  # fmt: skip
def test_a_file_source_is_refused_before_a_staging_job_exists(
    field: str, change: dict[str, Any]
) -> None:
    body = body_of(example())
    body["spec"]["model"].update(change)
    result = plan(observed(body), CONFIG, NOW)
    ready = refused_before_anything(result)
    assert ready["reason"] == "LocalSourceRefused"
    assert ready["message"].startswith(f"{field}: file://")
