"""Errors that scorelab raises for bad input.

Every error a user can cause is a :class:`ScorelabError`. Its message is one line
that says what was wrong and how to fix it; the CLI prints that line to stderr
and exits with status 2, without a traceback.
"""

from __future__ import annotations


class ScorelabError(Exception):
    """Base class: bad input or a state the user can fix."""


class DataError(ScorelabError):
    """A data set name, file or array that cannot be used."""


class ConfigError(ScorelabError):
    """An option or configuration value out of range."""


class CheckpointError(ScorelabError):
    """A run directory or checkpoint that is missing, corrupt or mismatched."""


class TrainingDiverged(ScorelabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def require_positive(name: str, value: float) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number > 0."""
    if not (value > 0 and value != float("inf")):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def require_positive_int(name: str, value: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def one_line(error: BaseException) -> str:
    """The message of ``error`` folded onto one line (wrapped library errors can span several)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
