"""Cancellation files: each row cancels an invoice (or a batch invoice, releasing its invoices).

- ``kind``: the :class:`CancellationFiles` hooks the pipeline calls.
- ``cancelling``: rows checked in polars, applied one chunk per transaction.
- ``check``: ``invoice-worker validate`` for cancellation files.
"""

from worker.kinds.cancellations.kind import CancellationFiles

__all__ = ["CancellationFiles"]
