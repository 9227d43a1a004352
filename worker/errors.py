"""The worker's error tree. Row-level validation failures are results, never these.

Delivery errors (a transport's or a webhook's) live in :mod:`notifications.errors`,
since ``notifications`` imports nothing of ``worker``.
"""

from __future__ import annotations


class InvoiceWorkerError(Exception):
    """Base class of every error raised on purpose by invoice-worker."""


class ConfigError(InvoiceWorkerError):
    """The configuration file or an environment variable is not valid."""


class StateError(InvoiceWorkerError):
    """The state database cannot be used as it is."""


class BrokerError(InvoiceWorkerError):
    """The Redis broker could not be started or reached."""


class FileRejected(InvoiceWorkerError):
    """A dropped file cannot be processed at all; carries its whole-file code."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line


class LeaseHeld(InvoiceWorkerError):
    """Another live run holds the file's lease; this run stands back."""
