"""Invoice files (one to many, PayFORT batch invoicing): one row, one payment-link invoice.

- ``kind``: the :class:`InvoiceFiles` hooks the pipeline calls.
- ``validation``: the column rules over each chunk, in polars.
- ``processing``: validated chunks become invoices, a transaction per chunk (the SQL is
  in ``worker.state.invoices``).
- ``existing``: rows against the invoices that have their references (SPEC 13: EXISTS
  or MERCHANT_REFERENCE_EXISTS), at validation and again at processing.
- ``results``: the results file's lines, CREATED, EXISTS or REJECTED.
- ``check``: ``invoice-worker validate`` for invoice files.
"""

from worker.kinds.invoices.kind import InvoiceFiles

__all__ = ["InvoiceFiles"]
