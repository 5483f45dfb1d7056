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
