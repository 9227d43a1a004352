"""``invoice-worker validate`` for batch request files: every rule, nothing written.

Requests and rows are checked against the state database as it is now (read
only), when there is one. What earlier requests or rows of the same file would
create or pay is carried along in memory, as processing would see it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from rules.batches import BatchContext, evaluate
from worker.errors import FileRejected
from worker.intake.readers import Table
from worker.kinds.batches import requests as batching
from worker.pipeline.check import Report
from worker.settings import Settings
from worker.state import Store

_PLAIN = re.compile(r"^[\w.:/@+#-]+$")


def _shown(text: str | None) -> str:
    """A value from the file, fit for a terminal: quoted and escaped unless plain."""
    if text is None:
        return "(none)"
    return text if _PLAIN.match(text) else json.dumps(text, ensure_ascii=False)


def batches(settings: Settings, table: Table, store: Store | None) -> Report:
    """Each request against the nine rules, as processing would decide it now."""
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
