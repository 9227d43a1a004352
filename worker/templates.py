"""CSV templates: the header and an example row of each file kind."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from rules.columns import INVOICE_COLUMNS

BATCH_COLUMNS = ("transaction_id", "invoice_number", "description")
PAYMENT_COLUMNS = ("payment_reference", "invoice_number", "amount", "currency", "paid_at")


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
        header = list(PAYMENT_COLUMNS)
        row = [
            "PAY-2026-0001",
            "100000000001",
            "10000",
            "USD",
            expiry.strftime("%Y-%m-%dT10:00:00+00:00"),
        ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerow(row)
    return out.getvalue()
