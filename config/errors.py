"""The error hierarchy every BitVelocity module raises from.

Code decides what to do with a failure by its class, never by its message:
``TransientError`` is retried with backoff (a broker, database or registry that is not
reachable now), ``PermanentError`` is dead-lettered or reported (bad input, bad
configuration). Every message names what failed, on which input, and what the user can do.
"""

from __future__ import annotations


class BitVelocityError(Exception):
    """Base of every error this project raises on purpose."""


class TransientError(BitVelocityError):
    """A fault that may clear by itself: retry with backoff, never drop the record."""


class PermanentError(BitVelocityError):
    """A fault that retrying cannot fix: dead-letter the record or stop with a clear message."""


class ConfigurationError(PermanentError):
    """A setting is missing, malformed or contradicts the machine (port in use, tool missing)."""


class StackError(BitVelocityError):
    """A local service could not be installed, started, checked or stopped."""


class DependencyMissingError(StackError, ConfigurationError):
    """A program or package the stack needs is absent (Java, Maven, PostgreSQL binaries)."""


class ArtifactResolutionError(StackError):
    """Maven could not resolve a jar or archive the stack needs."""


class ServiceStartError(StackError):
    """A service was started but did not become ready in time."""


class RegistryError(BitVelocityError):
    """Base for schema registry failures."""


class RegistryUnavailableError(RegistryError, TransientError):
    """The registry could not be reached or answered 5xx: retry, never dead-letter."""


class SchemaNotFoundError(RegistryError, PermanentError):
    """The registry answered that a schema id or subject does not exist."""


class SchemaRejectedError(RegistryError, PermanentError):
    """The registry refused a schema (invalid, or incompatible with the subject's level)."""


class EnvelopeError(PermanentError):
    """The record decodes, but is not a Debezium record we understand (change envelope or
    transaction metadata)."""


class FramingError(PermanentError):
    """Record bytes do not carry a known schema-registry framing."""


class StatementStatsUnavailableError(ConfigurationError):
    """pg_stat_statements is not loaded or not created: slow queries cannot be listed."""
