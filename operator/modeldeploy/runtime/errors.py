"""Why a request was not answered, and how each protocol and the metrics say so.

Plain exceptions, not kserve's: the codec, the checks and the batcher import no kserve (whose
generated protobuf module clashes with tritonclient's in one process), and kserve's gRPC
interceptor would turn anything it does not know into a bare "Internal server error".

One table, so REST, gRPC and ``modeldeploy_requests_total{outcome}`` can never disagree: the
canary analysis counts ``invalid`` as the client's fault and everything else but ``success`` as
the runtime's (``controller/metric_sources.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import grpc


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


class InvalidRequestError(ValueError):
    """The client's fault: the request is malformed or does not fit the model."""


class BodyTooLargeError(InvalidRequestError):
    """The request body is over the cap; refused while reading it."""


class UnknownModelError(LookupError):
    """No model of that name is served here."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Model with name {name} does not exist.")


class NotReadyError(RuntimeError):
    """The model is loaded but not ready, e.g. its self-test failed; the reason says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"Model with name {name} is not ready: {reason}")


class OverloadedError(RuntimeError):
    """The batch queue is full: refused at once rather than queued behind everyone else."""


class DeadlineExceededError(RuntimeError):
    """The request was not answered within its deadline."""


class BatchFailedError(RuntimeError):
    """ONNX Runtime (or what runs around it) failed on the batch this request was in."""


@dataclass(frozen=True)
class Refusal:
    http: int
    grpc: grpc.StatusCode
    outcome: Outcome


_REFUSALS: list[tuple[type[Exception], Refusal]] = [
    (BodyTooLargeError, Refusal(413, grpc.StatusCode.INVALID_ARGUMENT, Outcome.INVALID)),
    (InvalidRequestError, Refusal(400, grpc.StatusCode.INVALID_ARGUMENT, Outcome.INVALID)),
    (UnknownModelError, Refusal(404, grpc.StatusCode.NOT_FOUND, Outcome.INVALID)),
    (NotReadyError, Refusal(503, grpc.StatusCode.UNAVAILABLE, Outcome.ERROR)),
    (OverloadedError, Refusal(503, grpc.StatusCode.RESOURCE_EXHAUSTED, Outcome.OVERLOADED)),
    (DeadlineExceededError, Refusal(504, grpc.StatusCode.DEADLINE_EXCEEDED, Outcome.TIMEOUT)),
]
_INTERNAL = Refusal(500, grpc.StatusCode.INTERNAL, Outcome.ERROR)


def refusal(err: Exception) -> Refusal:
    """How ``err`` is answered: the first matching row, else an internal error."""
    return next((r for kind, r in _REFUSALS if isinstance(err, kind)), _INTERNAL)
