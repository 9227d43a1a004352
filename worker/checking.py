"""``invoice-worker validate``: the same readers and rules as the pipeline, nothing written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

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


@dataclass
class Report:
    kind: str
    rows: int = 0
    rejected: int = 0
    unknown_columns: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    def lines(self, name: str, limit: int) -> Iterator[str]:
        shown = 0
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
            f"{name}: {self.kind} file, {self.rows} rows, {self.rows - self.rejected} valid, "
            f"{self.rejected} with errors"
        )


def check(settings: Settings, path: Path, work: Path) -> Report:
    table = readers.open_table(path, work, settings.encoding)
    if table.kind != "invoices":
        return Report(kind=table.kind)
    exists = None
    if settings.state_db.exists():
        exists = existing_references(Store(settings.state_db))
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
