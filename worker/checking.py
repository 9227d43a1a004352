"""``invoice-worker validate``: the same readers and rules as the pipeline, nothing written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rules import payments as payment_rules
from rules.columns import INVOICE_COLUMNS
from worker import readers
from worker.errors import FileRejected
from worker.invoices import rules_context
from worker.processing import existing_references
from worker.settings import Settings
from worker.store import Store
from worker.validation import InvoiceValidator

_CODE = re.compile(r"([A-Z_]+)\(([a-z_]+)\)")
MESSAGES = {"REQUIRED": "a value is required", "TOO_LONG": "longer than allowed"}
for _column in INVOICE_COLUMNS:
    for _rule in _column.rules:
        MESSAGES[f"{_rule.code}({_column.name})"] = _rule.message
MESSAGES["PHONE_REQUIRED_FOR_SMS(customer_phone)"] = "SMS is asked for: a phone is required"
for _column in payment_rules.columns(with_state=True):
    for _rule in _column.rules:
        MESSAGES.setdefault(f"{_rule.code}({_column.name})", _rule.message)


@dataclass
class Report:
    kind: str
    rows: int = 0
    rejected: int = 0
    unknown_columns: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    #: Errors already worded (batch requests name invoices, not columns).
    notes: list[str] = field(default_factory=list)
    #: What the file is made of: rows, or batch requests.
    unit: str = "rows"

    def lines(self, name: str, limit: int) -> Iterator[str]:
        shown = 0
        for note in self.notes:
            if shown < limit:
                yield f"{name}:{note}"
            shown += 1
        for line, codes in self.errors:
            for code, column in _CODE.findall(codes):
                if shown < limit:
                    why = MESSAGES.get(f"{code}({column})") or MESSAGES.get(code, "")
                    yield f"{name}:{line}: {column}: {code}" + (f" ({why})" if why else "")
                shown += 1
        if shown > limit:
            yield f"... {shown - limit} more errors"
        if self.unknown_columns:
            yield f"{name}: columns ignored: {', '.join(self.unknown_columns)}"
        yield (
            f"{name}: {self.kind} file, {self.rows} {self.unit}, "
            f"{self.rows - self.rejected} valid, {self.rejected} with errors"
        )


def check(settings: Settings, path: Path, work: Path) -> Report:
    table = readers.open_table(path, work, settings.encoding)
    store = Store(settings.state_db) if settings.state_db.exists() else None
    if table.kind in ("batches", "payments"):
        from worker import batch_check  # it builds this module's Report

    if table.kind == "batches":
        return batch_check.batches(settings, table, store)
    if table.kind == "payments":
        return batch_check.payments(settings, table, store)
    exists = existing_references(store) if store else None
    ctx = rules_context(settings.currencies, dict(settings.accounts), settings.default_account)
    validator = InvoiceValidator(ctx, exists, errors_only=True)
    report = Report(kind=table.kind)
    for chunk in validator.run(table, settings.chunk_rows):
        bad = chunk.filter(~pl.col("valid")).select("line_number", "errors")
        report.errors.extend(bad.rows())
    summary = validator.summary
    if summary.rows == 0:
        raise FileRejected("EMPTY_FILE", "the file has a header but no data rows", line=2)
    report.rows, report.rejected = summary.rows, summary.rejected
    report.unknown_columns = summary.unknown_columns
    return report
