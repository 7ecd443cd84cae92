"""Why staging failed, in words a user can act on, with a reason and an exit code per cause.

The reason becomes the ``ArtifactReady=False`` condition's reason; the exit code tells the
operator (and a shell) which kind of failure it was without parsing text.
"""

from __future__ import annotations


class StagingError(Exception):
    """Base of every staging failure. ``str(err)`` is the message shown to the user."""

    reason = "StagingFailed"
    exit_code = 1


class SourceUnavailableError(StagingError):
    """The model URI could not be fetched (unreachable, missing, no permission)."""

    reason = "SourceUnavailable"
    exit_code = 10


class SourceUnreachableError(SourceUnavailableError):
    """The source could not be reached just now (a refused or reset connection, a timeout,
    HTTP 5xx or 429, S3 throttling): another attempt may succeed, so the Job retries it."""

    reason = "SourceUnreachable"
    exit_code = 21


class UnsafeArchiveError(StagingError):
    """An archive entry would land outside the folder it is unpacked into."""

    reason = "UnsafeArchive"
    exit_code = 11


class FormatMismatchError(StagingError):
    """The file is not what ``spec.model.format`` says it is."""

    reason = "FormatMismatch"
    exit_code = 12


class CorruptModelError(StagingError):
    """The file claims the right format but cannot be read."""

    reason = "CorruptModel"
    exit_code = 13


class EntrypointError(StagingError):
    """The state_dict entrypoint cannot be imported, called, or does not fit the weights."""

    reason = "EntrypointFailed"
    exit_code = 14


class ExportError(StagingError):
    """PyTorch → ONNX export failed, typically on an operator ONNX cannot express."""

    reason = "ExportFailed"
    exit_code = 15


class OptimizationError(StagingError):
    """FP16 conversion or INT8 quantization failed."""

    reason = "OptimizationFailed"
    exit_code = 16


class ParityError(StagingError):
    """The optimized graph drifted from the source model beyond the spec's tolerances."""

    reason = "ParityCheckFailed"
    exit_code = 17


class DestinationError(StagingError):
    """The artifact store could not be written."""

    reason = "DestinationUnavailable"
    exit_code = 18


class InputMismatchError(StagingError):
    """The model rejects the inputs the spec declares (their shape or dtype)."""

    reason = "InputMismatch"
    exit_code = 19


class LabelsMismatchError(StagingError):
    """The class labels do not match the model's number of classes."""

    reason = "LabelsMismatch"
    exit_code = 20


class UntrustedArtifactError(StagingError):
    """What the step that ran the tenant's code left for publishing is not the artifact it
    claims to be: an unexpected file, a digest that does not match, a manifest that does not
    belong to this run. The trusted publisher refuses it, and nothing is published."""

    reason = "InvalidStagingResult"
    exit_code = 22
