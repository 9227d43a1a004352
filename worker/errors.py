"""The one error tree. Row-level validation failures are results, never these."""

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


class DeliveryError(InvoiceWorkerError):
    """An email or webhook could not be delivered now; it will be retried."""


class PermanentDeliveryError(DeliveryError):
    """An email or webhook was refused for good (e.g. an SMTP 5xx); not retried."""


class RecipientDeferred(DeliveryError):
    """A working server deferred one recipient (SMTP 4xx at RCPT); others can go on."""
