"""The status patch: what changed between the status as stored and the status as planned."""

from __future__ import annotations

from typing import Any


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) from ``old`` to ``new``, and only what changed: keys
    ``new`` dropped become null, so a finished step's ``stepStartedAt`` or a promoted canary's
    ``revisions.canary`` really go (a merge patch leaves absent keys as they were); keys whose
    value is the same are left out, so the API server decodes, and the audit log shows, only
    the change. Lists (the conditions) are replaced whole, as a merge patch does."""
    patch: dict[str, Any] = dict.fromkeys(old.keys() - new.keys())
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if inner := merge_patch(before, value):
                patch[key] = inner
        elif key not in old or value != before:
            patch[key] = value
    return patch
