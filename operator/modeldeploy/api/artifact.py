"""What identifies an artifact: the parts of a ModelDeployment's spec that change its bytes.

The staging Job hashes these (with the source file's digest) into the artifact's content key;
the operator hashes them (with the source URI and the store) to decide whether a spec change
needs a new staging run. Both must agree on the list, so it lives here, importable by either
without torch.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.api.monitoring import MonitoringWindow
from modeldeploy.api.serving import Batching


def artifact_options(deployment: ModelDeployment) -> dict[str, Any]:
    """Every part of the spec that changes the artifact's bytes; the rest (scaling, rollout,
    where the source lives) does not, so changing it reuses the artifact."""
    spec = deployment.spec
    batching = spec.serving.batching
    reference = spec.monitoring.reference
    window = spec.monitoring.window
    model = spec.model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"uri"})
    return {
        "model": model,
        "optimization": spec.optimization.model_dump(mode="json", by_alias=True, exclude_none=True),
        "maxBatchSize": spec.serving.batching.max_batch_size,
        "maxQueueDelay": spec.serving.batching.max_queue_delay,
        "gpu": spec.serving.resources.gpu > 0,
        # Newer manifest fields count only when set away from their defaults, so an operator
        # upgrade does not restage (and roll out again) every deployment.
        **{
            key: value
            for key, value, default in (
                ("maxQueueSize", batching.max_queue_size, Batching().max_queue_size),
                ("requestTimeout", batching.request_timeout, Batching().request_timeout),
            )
            if value != default
        },
        # Only when set, as above: the profile and its window are part of the artifact.
        **(
            {"reference": reference.model_dump(mode="json", by_alias=True)}
            if reference is not None
            else {}
        ),
        **(
            {"monitoringWindow": window.model_dump(mode="json", by_alias=True)}
            if window != MonitoringWindow()
            else {}
        ),
    }


def staging_hash(deployment: ModelDeployment, store: str) -> str:
    """Ten hex digits that change exactly when a new staging run is needed: a different source
    URI, artifact option or artifact store. (A changed file behind the same URI is caught by
    the staging Job's digest, not here: the operator never reads model files.)"""
    canonical = json.dumps(
        {"uri": deployment.spec.model.uri, "options": artifact_options(deployment), "store": store},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]
