"""``invoice-worker validate`` for cancellation files: every rule, nothing written.

Rows are checked against the state database as it is now (read only), when there
is one. What earlier rows of the same file would cancel and release is carried
along in memory, as processing would see it.
"""

from __future__ import annotations

import polars as pl

from rules import cancellations as cancellation_rules
from worker.errors import FileRejected
from worker.intake.readers import Table
from worker.kinds import context
from worker.kinds.cancellations import cancelling
from worker.pipeline.check import Report
from worker.settings import Settings
from worker.state import Store, lookups

MESSAGES: dict[str, str] = {
    f"{rule.code}({column.name})": rule.message
    for column in cancellation_rules.columns(with_state=True)
    for rule in column.rules
} | {"REQUIRED(invoice_number)": "an invoice_number or a merchant_reference is required"}


def cancellations(settings: Settings, table: Table, store: Store | None) -> Report:
    """Each row against the rules and the invoices' state, as processing would apply it."""
    ctx = context.for_settings(settings)
    validator = cancelling.CancellationValidator(ctx)
    conn = store.conn if store else None
    cancelled: set[int] = set()
    released: set[int] = set()
    report = Report(kind="cancellations", messages=MESSAGES)
    for chunk in validator.run(table, settings.chunk_rows):
        invoices, _ = cancelling.state(conn, chunk, None)
        earlier = cancelling.Earlier(frozenset(cancelled), frozenset(released))
        decided = cancelling.decide(chunk, invoices, frozenset(), ctx, earlier)
        applied = decided.filter(pl.col("applied"))
        cancelled.update(applied["_invoice"].to_list())
        batches = applied.filter(pl.col("_type") == "BATCH")["_invoice"].to_list()
        if conn is not None and batches:
            released.update(int(r[0]) for r in lookups.linked(conn, batches, ["invoice_number"]))
        report.errors.extend(
            decided.filter(~pl.col("applied")).select("line_number", "errors").rows()
        )
    if validator.summary.rows == 0:
        raise FileRejected("EMPTY_FILE", "the file has a header but no data rows", line=2)
    report.rows = validator.summary.rows
    report.rejected = len(report.errors)
    report.unknown_columns = validator.summary.unknown_columns
    return report
