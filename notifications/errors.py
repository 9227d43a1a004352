"""The notifications' error tree: what a transport or a webhook raises on purpose.

``notifications`` imports nothing of ``worker``, so its errors have their own
root; the worker's delivery loops catch these.
"""

from __future__ import annotations


class NotificationError(Exception):
    """Base class of every error raised on purpose by notifications."""


class DeliveryError(NotificationError):
    """An email or webhook could not be delivered now; it will be retried."""


class PermanentDeliveryError(DeliveryError):
    """An email or webhook was refused for good (e.g. an SMTP 5xx); not retried."""


class RecipientDeferred(DeliveryError):
    """A working server deferred one recipient (SMTP 4xx at RCPT); others can go on."""
