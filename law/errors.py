"""Errors the user can act on. The CLI prints them without a traceback."""


class LawError(Exception):
    """Base class for every error LAW raises on purpose."""


class ConfigError(LawError, ValueError):
    """A configuration value is invalid. The message names the field and the fix."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class DataError(LawError):
    """A data set cannot be found, read or used as configured."""


class TrainingFailed(LawError):
    """Training stopped because the network is broken; ``status`` names how, ``history`` holds
    the epochs trained before it (set by the training loop)."""

    status = "failed"
    history: list = []


class TrainingDiverged(TrainingFailed, FloatingPointError):
    """A loss became NaN or infinite; training stops instead of going on silently."""

    status = "diverged"


class TrainingCollapsed(TrainingFailed):
    """The network predicts one class for everything; training stops instead of going on silently."""

    status = "collapsed"


class Interrupted(LawError):
    """Ctrl-C during a long run; the message says what was kept and how to continue."""
