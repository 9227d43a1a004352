"""CSV templates: the header and an example row of each file kind."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from rules.columns import INVOICE_COLUMNS
from rules.payments import PAYMENT_COLUMNS
from worker.batching import CSV_COLUMNS as BATCH_COLUMNS


def csv_template(kind: str, expiry: datetime) -> str:
    if kind == "invoices":
        header = [c.name for c in INVOICE_COLUMNS]
        example = {c.name: c.example for c in INVOICE_COLUMNS}
        example["request_expiry_date"] = expiry.strftime("%Y-%m-%dT23:59:00+00:00")
        row = [example[name] for name in header]
    elif kind == "batches":
        header = list(BATCH_COLUMNS)
        row = ["TX-2026-0001", "100000000001", "March invoices, paid as one"]
    else:
        header = [c.name for c in PAYMENT_COLUMNS]
        row = [c.example for c in PAYMENT_COLUMNS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerow(row)
    return out.getvalue()
