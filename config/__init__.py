"""Settings and errors shared by every BitVelocity module."""

from config.errors import BitVelocityError, PermanentError, TransientError
from config.settings import Settings, load_settings

__all__ = ["BitVelocityError", "PermanentError", "Settings", "TransientError", "load_settings"]
