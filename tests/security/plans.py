"""What the security tests ask of a plan that refuses a spec."""

from __future__ import annotations

from typing import Any


def refused_before_anything(result: Any) -> dict[str, Any]:
    """The Ready condition of a plan that created, applied and staged nothing."""
    assert result.create_job is None
    assert result.create_network_policy is None
    assert result.apply_isvc is None
    ready: dict[str, Any] = {c["type"]: c for c in result.status.wire()["conditions"]}["Ready"]
    assert ready["status"] == "False"
    return ready
