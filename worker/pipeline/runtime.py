"""What a job needs, built once per process and passed down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from notifications.reports import Envelope
from worker.pipeline.kind import Kinds
from worker.settings import Settings
from worker.state import File, Store


@dataclass
class Runtime:
    """The settings, the state store and the kinds of file, with the kicks that get what
    a job recorded delivered soon (the service binds them to its actors)."""

    settings: Settings
    store: Store
    kinds: Kinds
    #: Called after an email is recorded, to get it delivered soon.
    kick_mail: Callable[[], None] = field(default=lambda: None)
    #: Called after a merchant webhook is recorded, to get it delivered soon.
    kick_webhooks: Callable[[], None] = field(default=lambda: None)
    #: Called after invoices are created, to start their customers' emails.
    kick_invoice_mail: Callable[[], None] = field(default=lambda: None)

    @property
    def envelope(self) -> Envelope:
        return Envelope(sender=self.settings.mail_from, admins=self.settings.admin_emails)

    def work(self, file: File) -> Path:
        """The file's work folder under ``var/work/``: its chunks while it is in progress."""
        return self.settings.work / str(file.id)
