"""Why a request was not answered, and how each protocol and the metrics say so.

One table, so REST, gRPC and ``modeldeploy_requests_total{outcome}`` can never disagree: the
canary analysis counts ``invalid`` as the client's fault and everything else but ``success`` as
the runtime's (``controller/metric_sources.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import grpc
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady


class Outcome(StrEnum):
    """The ``outcome`` label of ``modeldeploy_requests_total``."""

    SUCCESS = "success"
    INVALID = "invalid"
    """The client's fault: a malformed, oversized or mismatched request."""
    ERROR = "error"
    """The runtime's fault: ONNX Runtime or post-processing failed."""
    OVERLOADED = "overloaded"
    """Refused because the batch queue was full."""
    TIMEOUT = "timeout"
    """Not answered within the request deadline."""


class OverloadedError(RuntimeError):
    """The batch queue is full: refused at once rather than queued behind everyone else."""


class DeadlineExceededError(RuntimeError):
    """The request was not answered within its deadline."""


class BodyTooLarge(InvalidInput):  # type: ignore[misc]
    """The request body is over the cap; refused while reading it."""


class BatchFailedError(RuntimeError):
    """ONNX Runtime (or what runs around it) failed on the batch this request was in."""


@dataclass(frozen=True)
class Refusal:
    http: int
    grpc: grpc.StatusCode
    outcome: Outcome


_REFUSALS: list[tuple[type[Exception], Refusal]] = [
    (BodyTooLarge, Refusal(413, grpc.StatusCode.INVALID_ARGUMENT, Outcome.INVALID)),
    (InvalidInput, Refusal(400, grpc.StatusCode.INVALID_ARGUMENT, Outcome.INVALID)),
    (ModelNotFound, Refusal(404, grpc.StatusCode.NOT_FOUND, Outcome.INVALID)),
    (ModelNotReady, Refusal(503, grpc.StatusCode.UNAVAILABLE, Outcome.ERROR)),
    (OverloadedError, Refusal(503, grpc.StatusCode.RESOURCE_EXHAUSTED, Outcome.OVERLOADED)),
    (DeadlineExceededError, Refusal(504, grpc.StatusCode.DEADLINE_EXCEEDED, Outcome.TIMEOUT)),
]
_INTERNAL = Refusal(500, grpc.StatusCode.INTERNAL, Outcome.ERROR)


def refusal(err: Exception) -> Refusal:
    """How ``err`` is answered: the first matching row, else an internal error."""
    return next((r for kind, r in _REFUSALS if isinstance(err, kind)), _INTERNAL)
