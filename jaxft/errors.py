"""jaxft's error hierarchy: every message names the file, key, field or tensor at fault."""


class JaxftError(Exception):
    """Base class of every error jaxft raises on bad input."""


class UnsupportedConfigError(JaxftError):
    """A model config field changes the math in a way jaxft does not implement."""


class WeightLoadError(JaxftError):
    """A checkpoint tensor is missing, unexpected or of the wrong shape."""


class UnknownModelError(JaxftError):
    """A registry name or model source that cannot be resolved."""


class DataError(JaxftError):
    """A malformed data file: the message names the file, line and field."""


class ConfigError(JaxftError):
    """A bad experiment config key or value."""


class CheckpointError(JaxftError):
    """A checkpoint that cannot be written or read back: the message names the directory, step and file."""


class WriteError(JaxftError, OSError):
    """An output file that cannot be written (disk full, no permission): names the file, keeps the errno.

    Still an OSError, so callers that handle OS errors keep doing so; a CLI reports it in one line."""

    def __init__(self, path: str, error: OSError):
        super().__init__(f"cannot write {path}: {error.strerror or error}")
        self.errno, self.strerror, self.filename = error.errno, error.strerror, path

    def __str__(self) -> str:
        return self.args[0]
