"""``invoice-worker validate`` for batch request and payment files: every rule, nothing written.

Requests and rows are checked against the state database as it is now (read
only), when there is one. What earlier requests or rows of the same file would
create or pay is carried along in memory, as processing would see it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import polars as pl

from rules.batch import BatchContext, evaluate
from worker import batching, paying
from worker.checking import Report
from worker.errors import FileRejected
from worker.invoices import rules_context
from worker.readers import Table
from worker.settings import Settings
from worker.store import Store

_PLAIN = re.compile(r"^[\w.:/@+#-]+$")


def _shown(text: str | None) -> str:
    """A value from the file, fit for a terminal: quoted and escaped unless plain."""
    if text is None:
        return "(none)"
    return text if _PLAIN.match(text) else json.dumps(text, ensure_ascii=False)


def batches(settings: Settings, table: Table, store: Store | None) -> Report:
    requests = batching.read_requests(table, settings.chunk_rows)
    if not requests:
        raise FileRejected("EMPTY_FILE", "the file holds no batch request")
    conn = store.conn if store else None
    claimed: set[int] = set()
    created: set[str] = set()
    now = datetime.now(UTC)
    report = Report(kind="batches", rows=len(requests), unit="batch requests")
    for position, parsed in enumerate(requests, start=1):
        request = parsed.request
        tx = request.transaction_id
        frame = batching.invoices_frame(conn, request)
        exists = bool(tx) and (
            tx in created or (conn is not None and batching.transaction_exists(conn, tx))
        )
        ctx = BatchContext(now=now, transaction_exists=exists, claimed=frozenset(claimed))
        failures = evaluate(request, frame, ctx)
        if not failures:
            claimed.update(frame["invoice_number"].to_list())
            created.add(tx or "")
            continue
        report.rejected += 1
        where = f"{parsed.line_numbers[0]}" if parsed.line_numbers else f" request {position}"
        for failure in failures:
            numbers = ", ".join(_shown(n) for n in failure.invoice_numbers)
            report.notes.append(
                f"{where}: transaction {_shown(tx)}: {failure.rule.code}"
                f" ({failure.rule.message})" + (f": {numbers}" if numbers else "")
            )
    return report


def payments(settings: Settings, table: Table, store: Store | None) -> Report:
    ctx = rules_context(settings.currencies, dict(settings.accounts), settings.default_account)
    validator = paying.PaymentValidator(ctx)
    conn = store.conn if store else None
    paid: set[int] = set()
    report = Report(kind="payments")
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
