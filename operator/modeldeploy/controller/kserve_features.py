"""What the installed KServe can do, read from the InferenceService schema the API server
publishes (OpenAPI v3, built from KServe's CRD), once at start-up.

Only one question so far: does ``spec.canary`` exist (KServe >= 0.20)? The API server prunes
fields a CRD does not know, so writing ``spec.canary`` to an older KServe would silently drop
the canary; asking the schema is the only safe way to know. OpenAPI discovery is open to every
authenticated client (the ``system:discovery`` role), so this needs no RBAC of its own.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubernetes import client

from modeldeploy.controller.config import (
    KSERVE_CANARY_AUTO,
    KSERVE_CANARY_OFF,
    KSERVE_CANARY_ON,
    OperatorConfig,
)

OPENAPI_PATH = "/openapi/v3/apis/serving.kserve.io/v1beta1"
SCHEMA_LIMIT = 64 * 1024 * 1024
"""KServe 0.20's InferenceService schema is about 3 MiB; anything past this is not it."""

log = logging.getLogger(__name__)


def has_canary(document: dict[str, Any]) -> bool:
    """Whether the InferenceService schema in an OpenAPI v3 ``document`` has ``spec.canary``."""
    schemas = (document.get("components") or {}).get("schemas") or {}
    for name, schema in schemas.items():
        if not name.endswith(".InferenceService"):
            continue
        spec = ((schema.get("properties") or {}).get("spec")) or {}
        if "canary" in (spec.get("properties") or {}):
            return True
        ref = spec.get("$ref") or next(
            (s.get("$ref") for s in spec.get("allOf") or [] if s.get("$ref")), None
        )
        target = schemas.get(str(ref).rsplit("/", 1)[-1]) if ref else None
        if target and "canary" in (target.get("properties") or {}):
            return True
    return False


def fetch_schema(api: client.ApiClient) -> dict[str, Any]:
    """The OpenAPI v3 document of serving.kserve.io/v1beta1 (the API server's own answer, from
    the CRD a cluster administrator installed; bounded all the same)."""
    method, url, headers, body, post = api.param_serialize(
        "GET", OPENAPI_PATH, header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )  # fmt: skip
    response = api.call_api(method, url, headers, body, post, _request_timeout=30)
    raw = response.read()
    if not 200 <= response.status < 300:
        raise ValueError(f"{OPENAPI_PATH}: HTTP {response.status} {raw[:200]!r}")
    if len(raw) > SCHEMA_LIMIT:
        raise ValueError(f"{OPENAPI_PATH} is larger than {SCHEMA_LIMIT} bytes")
    document: dict[str, Any] = json.loads(raw)
    return document


def resolve(config: OperatorConfig, api: client.ApiClient) -> str:
    """``config.kserve_canary`` with ``auto`` answered by the installed schema; a schema that
    cannot be read means the separate-InferenceService canary, which every KServe supports."""
    if config.kserve_canary != KSERVE_CANARY_AUTO:
        return config.kserve_canary
    try:
        found = has_canary(fetch_schema(api))
    except Exception as err:  # no KServe yet, or discovery refused: the path every KServe has
        log.warning("cannot read the InferenceService schema (%s): canary as its own "
                    "InferenceService", err)  # fmt: skip
        return KSERVE_CANARY_OFF
    log.info("InferenceService spec.canary %s: Standard-mode canaries %s", "found" if found
             else "absent", "are spec.canary entries" if found else "are their own "
             "InferenceService")  # fmt: skip
    return KSERVE_CANARY_ON if found else KSERVE_CANARY_OFF
