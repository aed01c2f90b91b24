"""Errors the engine raises for bad input (as opposed to bugs). No torch here.

Each carries a one-line message fit for a user; ``field`` names the spec field at fault
when there is one, so the API can answer 4xx with it and the CLI can print it.
"""

from __future__ import annotations


class EngineError(Exception):
    """A problem with the job's input or environment, reported to the user as is."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{self.field}: {msg}" if self.field else msg


class SpecError(EngineError, ValueError):
    """The spec is well-formed but asks for something that cannot work."""


class DataError(EngineError):
    """The dataset is missing, malformed, or the class selection does not match it."""


class WeightsError(EngineError):
    """A weights file is missing, unsafe, or does not fit the architecture."""


class HardwareError(EngineError):
    """The requested compute device is not available."""


class CheckpointError(EngineError):
    """A checkpoint cannot be resumed (wrong spec, corrupt, other versions)."""
