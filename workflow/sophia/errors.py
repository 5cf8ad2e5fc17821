"""Errors a user can act on: each names the problem and where it is (file, row, field, key)."""


class SophiaError(Exception):
    """Base class: the CLI prints these as one line instead of a traceback."""


class ConfigError(SophiaError):
    """A configuration key is missing, unknown, ill-typed or inconsistent."""


class DataError(SophiaError):
    """An input dataset is unreadable or violates its documented schema."""


class ModelError(SophiaError):
    """A model source cannot be found or loaded."""


class ParityError(SophiaError):
    """A merged or exported model disagrees with its source beyond the configured tolerance."""


class EvalError(SophiaError):
    """An evaluation produced a result that would misreport the benchmark (nothing scored, prompts cut)."""
