"""Driftline's exceptions: one root, one subclass per kind of failure.

::

    DriftlineError
    ├── ConfigError            bad or missing configuration; the message names the setting
    ├── BrokerError            the local broker could not be built, started or stopped
    ├── KafkaUnavailableError  no cluster answered at the configured bootstrap servers
    ├── SchemaError            a schema file or registry answer is unusable
    ├── DecodeError            one event could not be turned into features (carries a short ``reason``)
    ├── ModelError             a model artifact is missing, malformed or of an unknown architecture
    │   └── VerificationError  a model version's signature or artifact checksum does not hold
    └── DeliveryError          the broker did not acknowledge what we produced; nothing was committed

Every message says what to do next, not only what went wrong.
"""

from __future__ import annotations


class DriftlineError(Exception):
    """Root of every error Driftline raises on purpose."""


class ConfigError(DriftlineError):
    """Configuration is missing or invalid."""


class BrokerError(DriftlineError):
    """The embedded local broker failed to build, start or stop."""


class KafkaUnavailableError(DriftlineError):
    """No Kafka cluster answered in time."""


class SchemaError(DriftlineError):
    """A schema could not be loaded, parsed or resolved."""


class DecodeError(DriftlineError):
    """An event could not be decoded or validated.

    ``reason`` is a short, stable label used for dead-letter headers and metrics
    (``undecodable``, ``unknown-schema``, ``missing-field``, ``non-finite``, ``wrong-length``, ...);
    the message holds the details.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ModelError(DriftlineError):
    """A model artifact could not be loaded."""


class VerificationError(ModelError):
    """A model version is unsigned, forged, tampered with or does not match its artifact.

    ``reason`` is a short label for logs and metrics (``unknown-key``, ``bad-signature``,
    ``sha256-mismatch``, ...).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DeliveryError(DriftlineError):
    """The broker did not acknowledge produced records; offsets were not committed."""
