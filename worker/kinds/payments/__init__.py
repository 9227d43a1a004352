"""Payment files: each row pays an invoice (or a batch invoice, and with it its invoices).

- ``kind``: the :class:`PaymentFiles` hooks the pipeline calls.
- ``paying``: rows checked in polars, applied one chunk per transaction.
- ``check``: ``invoice-worker validate`` for payment files.
"""

from worker.kinds.payments.kind import PaymentFiles

__all__ = ["PaymentFiles"]
