"""Small helpers for reading what the API server answered."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.rest import ApiException


def status_of(err: ApiException) -> dict[str, Any]:
    """The metav1.Status the API server sent with a refusal."""
    body: dict[str, Any] = json.loads(err.body)
    return body


def message_of(err: ApiException) -> str:
    """The refusal's message, with every cause's field and message appended."""
    status = status_of(err)
    causes = status.get("details", {}).get("causes", [])
    return "\n".join(
        [status["message"], *(f"{c.get('field')}: {c.get('message')}" for c in causes)]
    )


def kserve_candidate(runtime_spec: dict[str, Any], model_format: str, runtime_named: bool) -> bool:
    """Whether KServe would let this runtime serve a model of ``model_format``: its
    ``getServingRuntimeSupportedModelFormatLabelSet`` (pkg/controller/v1beta1/inferenceservice/
    utils) counts a supported format only when the InferenceService names the runtime or the
    format has ``autoSelect: true``; ``GetSupportingRuntimes`` picks among those for an
    InferenceService that names none."""
    return any(
        f["name"] == model_format and (runtime_named or f.get("autoSelect") is True)
        for f in runtime_spec["supportedModelFormats"]
    )
