"""The one error of the artifact contract, in a module of its own: the golden reader needs it
where pydantic is not installed (the GPU benchmark's machine)."""

from __future__ import annotations


class ArtifactError(RuntimeError):
    """Not an artifact written by ``modeldeploy stage``, or one changed since."""
