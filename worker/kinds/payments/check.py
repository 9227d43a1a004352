"""``invoice-worker validate`` for payment files: every rule, nothing written.

Rows are checked against the state database as it is now (read only), when there
is one. What earlier rows of the same file would pay is carried along in memory,
as processing would see it.
"""

from __future__ import annotations

import polars as pl

from rules import payments as payment_rules
from worker.errors import FileRejected
from worker.intake.readers import Table
from worker.kinds import context
from worker.kinds.payments import paying
from worker.pipeline.check import Report
from worker.settings import Settings
from worker.state import Store

MESSAGES: dict[str, str] = {
    f"{rule.code}({column.name})": rule.message
    for column in payment_rules.columns(with_state=True)
    for rule in column.rules
}


def payments(settings: Settings, table: Table, store: Store | None) -> Report:
    """Each row against the rules and the invoices' state, as processing would apply it."""
    ctx = context.for_settings(settings)
    validator = paying.PaymentValidator(ctx)
    conn = store.conn if store else None
    paid: set[int] = set()
    report = Report(kind="payments", messages=MESSAGES)
    for chunk in validator.run(table, settings.chunk_rows):
        invoices, used = paying.state(conn, chunk)
        decided = paying.decide(chunk, invoices, used, ctx, frozenset(paid))
        paid.update(decided.filter(pl.col("applied"))["_invoice"].to_list())
        report.errors.extend(
            decided.filter(~pl.col("applied")).select("line_number", "errors").rows()
        )
    if validator.summary.rows == 0:
        raise FileRejected("EMPTY_FILE", "the file has a header but no data rows", line=2)
    report.rows = validator.summary.rows
    report.rejected = len(report.errors)
    report.unknown_columns = validator.summary.unknown_columns
    return report
