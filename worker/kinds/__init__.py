"""The file kinds: one folder each, and the registry.

Adding a kind takes a folder here (a :class:`~worker.pipeline.kind.FileKind` and
what it needs), a line in :data:`KINDS`, and its rules module in ``rules/``.
Headers are tried in the order of the list: cancellations first, since their header
names invoices by columns other kinds also have (and is told by having none of
theirs).
"""

from __future__ import annotations

from pathlib import Path

from worker.errors import FileRejected
from worker.intake import readers
from worker.kinds.batches import BatchFiles
from worker.kinds.cancellations import CancellationFiles
from worker.kinds.invoices import InvoiceFiles
from worker.kinds.payments import PaymentFiles
from worker.pipeline.check import Report
from worker.pipeline.kind import Kinds
from worker.settings import Settings
from worker.state import store_for

__all__ = ["KINDS", "BatchFiles", "CancellationFiles", "InvoiceFiles", "PaymentFiles", "check"]

KINDS = Kinds(
    [
        CancellationFiles(),
        InvoiceFiles(),
        BatchFiles(),
        PaymentFiles(),
    ]
)


def check(settings: Settings, path: Path, work: Path) -> Report:
    """``invoice-worker validate``: the file's kind checks every row, nothing written."""
    table = readers.open_table(
        path, work, KINDS.signatures, settings.encoding, timezone=settings.spreadsheet_timezone
    )
    kind = KINDS.get(table.kind)
    if kind is None:
        raise FileRejected("UNKNOWN_FILE_KIND", f"{table.kind} files are not supported yet")
    # Read only: a database that is not there is not created, nor one there migrated.
    candidate = store_for(settings)
    store = candidate if candidate.initialised() else None
    return kind.check(settings, table, store)
