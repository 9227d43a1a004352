"""``invoice-worker validate`` for invoice files: the pipeline's rules, nothing written."""

from __future__ import annotations

from rules.invoices import INVOICE_COLUMNS
from worker.errors import FileRejected
from worker.intake.readers import Table
from worker.kinds import context
from worker.kinds.invoices.existing import existing_invoices
from worker.kinds.invoices.validation import CHECK_READ_ROWS, REJECTED, InvoiceValidator
from worker.pipeline.check import Report
from worker.settings import Settings
from worker.state import Store

MESSAGES: dict[str, str] = {
    f"{rule.code}({column.name})": rule.message
    for column in INVOICE_COLUMNS
    for rule in column.rules
}
MESSAGES["PHONE_REQUIRED_FOR_SMS(customer_phone)"] = "SMS is asked for: a phone is required"


def invoices(settings: Settings, table: Table, store: Store | None) -> Report:
    """Every row of an invoice file against the rules, and the references against the
    invoices that exist (when there is a state database): a row the same as its invoice
    is neither valid nor an error (SPEC 13)."""
    exists = existing_invoices(store) if store else None
    validator = InvoiceValidator(context.for_settings(settings), exists, errors_only=True)
    report = Report(kind=table.kind, messages=MESSAGES)
    for _, chunk in validator.run(table, settings.chunk_rows, CHECK_READ_ROWS):
        bad = chunk.filter(REJECTED).select("line_number", "errors")
        report.errors.extend(bad.rows())
    summary = validator.summary
    if summary.rows == 0:
        raise FileRejected("EMPTY_FILE", "the file has a header but no data rows", line=2)
    report.rows, report.rejected, report.exists = summary.rows, summary.rejected, summary.exists
    report.unknown_columns = summary.unknown_columns
    return report
