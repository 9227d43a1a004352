"""Payment files: each row pays an invoice (or a batch invoice, and with it its invoices).

Validation checks formats into chunk files; processing decides and applies
each chunk in one transaction (``paying``), recording the chunk's
decisions with its done mark (``worker.pipeline.deciding``), so the results
file always tells what was committed. Merchant webhooks recorded with the payments
are delivered after, by the ``deliver_webhooks`` actor.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from notifications import batch_reports
from notifications.prepared import Prepared
from rules.columns import Context
from rules.payments import PAYMENT_COLUMNS
from worker.intake.readers import Signature, Table
from worker.kinds import context
from worker.kinds.payments import check, paying
from worker.pipeline import chunks, deciding
from worker.pipeline.check import Report
from worker.pipeline.kind import FileKind, Summary
from worker.pipeline.results import formula_safe, write_csv_frames
from worker.pipeline.runtime import Runtime
from worker.settings import Settings
from worker.state import Connection, File, Store, payments

FIRST_ROWS = 20


class PaymentFiles(FileKind):
    """Each row pays an invoice, or a batch invoice and with it its invoices."""

    name = "payments"
    signature = Signature(
        "payments",
        frozenset({"payment_reference"}),
        ("payment_reference", "invoice_number", "amount", "currency"),
    )
    result_suffix = ".results.csv"
    reports_validation = False
    error_rate_applies = False

    def context(self, rt: Runtime) -> Context:
        return context.for_settings(rt.settings)

    def validate(self, rt: Runtime, file: File, table: Table) -> Summary:
        folder = rt.work(file)
        # An earlier try's chunks go. Its decisions stay: they are stored with the done
        # marks of the chunks they applied, which validating again makes the same.
        chunks.clear(folder, "chunk")
        validator = paying.PaymentValidator(self.context(rt))
        for index, chunk in enumerate(validator.run(table, rt.settings.chunk_rows)):
            chunks.write(folder, index, chunk, "chunk")
        return validator.summary

    def reserve(self, rt: Runtime, conn: Connection, summary: Summary) -> int | None:
        return None

    def process(self, rt: Runtime, file: File, renew: Callable[[], None]) -> None:
        ctx = self.context(rt)

        def step(conn: Connection, chunk: pl.DataFrame) -> tuple[pl.DataFrame, int]:
            invoices, used = paying.state(conn, chunk)
            decided = paying.decide(chunk, invoices, used, ctx)
            return paying.results(decided), paying.apply(conn, file.id, decided, ctx)

        deciding.apply_chunks(rt, file, renew, step)

    def _decided(self, rt: Runtime, file: File) -> Iterator[pl.DataFrame]:
        return deciding.results(rt, file)

    def write_results(self, rt: Runtime, file: File, target: Path, created: bool) -> None:
        safe = [formula_safe(pl.col(c)).alias(c) for c in ("payment_reference", "invoice_number")]
        frames = (d.with_columns(safe) for d in self._decided(rt, file))
        write_csv_frames(target, frames, paying.RESULT_COLUMNS)

    def _rejected(self, rt: Runtime, file: File) -> pl.DataFrame:
        return deciding.rejected(rt, file, paying.RESULT_COLUMNS)

    def errors_csv(self, rt: Runtime, file: File) -> bytes | None:
        rejected = self._rejected(rt, file)
        if rejected.is_empty():
            return None
        buffer = io.BytesIO()
        rejected.select(
            "line_number",
            formula_safe(pl.col("payment_reference")).alias("payment_reference"),
            formula_safe(pl.col("invoice_number")).alias("invoice_number"),
            "errors",
        ).write_csv(buffer, line_terminator="\r\n")
        return buffer.getvalue()

    def check(self, settings: Settings, table: Table, store: Store | None) -> Report:
        return check.payments(settings, table, store)

    def template(self, expiry: datetime) -> tuple[list[str], list[str]]:
        return [c.name for c in PAYMENT_COLUMNS], [c.example for c in PAYMENT_COLUMNS]

    def processing_report(self, rt: Runtime, file: File) -> Prepared:
        file_id = file.id
        rejected = self._rejected(rt, file)
        applied = file.created or 0
        return batch_reports.payments(
            rt.envelope,
            {"id": file_id, "name": file.name, "kind": self.name},
            applied=applied,
            rejected=len(rejected),
            batches_paid=payments.batches_paid(rt.store, file_id),
            first_errors=rejected.head(FIRST_ROWS)
            .select("line_number", "payment_reference", "errors")
            .rows(),
            currency_totals=payments.currency_totals(rt.store, file_id),
            result_name=f"{file.result_name}{self.result_suffix}",
            errors_csv=self.errors_csv(rt, file),
        )
