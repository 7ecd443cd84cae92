"""The status patch: what changed between the status as stored and the status as planned."""

from __future__ import annotations

from typing import Any


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) from ``old`` to ``new``: keys ``new`` dropped become
    null, so a finished step's ``stepStartedAt`` or a promoted canary's ``revisions.canary``
    really go (a merge patch leaves absent keys as they were)."""
    patch: dict[str, Any] = dict.fromkeys(old.keys() - new.keys())
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch
