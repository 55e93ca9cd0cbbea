"""The error types of compressor.

Every error the CLI expects carries an exit code and a message that says what went
wrong and what to do about it. The CLI prints ``Error: <message>`` and exits with
``exit_code``; a traceback is shown only with ``--debug``.

Exit codes: 2 = bad usage or input (the user must fix something), 1 = the run
failed (a step, a runtime or a gate).
"""

from __future__ import annotations


class CompressorError(Exception):
    """Base class: a failure with a message meant for the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}. Fix: {self.hint}"


class RecipeError(CompressorError):
    """A recipe or target file is malformed or inconsistent."""

    exit_code = 2


class DataError(CompressorError):
    """A dataset is missing, malformed or does not fit the model (e.g. NaN values)."""

    exit_code = 2


class ModelLoadError(CompressorError):
    """A model file or factory cannot be loaded safely."""

    exit_code = 2


class ReportError(CompressorError):
    """A report.json is unreadable, invalid or incompatible."""

    exit_code = 2


class ExportError(CompressorError):
    """Exporting a model to ONNX failed."""


class ParityError(CompressorError):
    """A converted model's outputs differ from the reference beyond tolerance."""


class StepError(CompressorError):
    """A compression step failed (pruning, distillation, quantization)."""


class BackendUnavailable(CompressorError):
    """A runtime/target cannot be used on this machine."""


class TargetFailed(CompressorError):
    """A target crashed, hung or produced invalid results."""


class GateFailed(CompressorError):
    """A CI gate did not hold."""
