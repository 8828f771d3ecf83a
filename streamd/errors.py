"""The small exception hierarchy every streamd module raises from.

Messages say what went wrong, where, and what to do about it.
"""


class StreamdError(Exception):
    """Base class of every error streamd raises on purpose."""


class ConfigError(StreamdError):
    """The configuration is invalid. ``key`` names the offending key (dotted path)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config key '{key}': {reason}")
        self.key = key
        self.reason = reason


class ConfigFileError(ConfigError):
    """The config file cannot be read or is not TOML: about the file, not one key."""

    def __init__(self, reason: str) -> None:
        StreamdError.__init__(self, reason)
        self.key = ""
        self.reason = reason


class SourceError(StreamdError):
    """A frame source could not be opened or read."""


class BackendError(StreamdError):
    """An inference backend could not be loaded, built or run."""


class KeyFileError(StreamdError):
    """A CURVE key file or the authorised-keys folder is missing or is not what it must be."""


class ModelLayoutError(StreamdError):
    """The model's outputs fit none of the YOLOX layouts streamd decodes."""
