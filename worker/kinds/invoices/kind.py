"""Invoice files (one to many, PayFORT batch invoicing): one row, one payment-link invoice."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from notifications import reports
from notifications.prepared import Prepared
from rules.columns import Context
from rules.invoices import INVOICE_COLUMNS, REQUIRED_COLUMNS
from worker.errors import StateError
from worker.intake.readers import Signature, Table
from worker.kinds import context
from worker.kinds.invoices import check, existing, processing, validation
from worker.kinds.invoices.results import (
    INVOICE_RESULT_COLUMNS,
    RESULT_INPUTS,
    invoice_result_rows,
)
from worker.pipeline import chunks
from worker.pipeline.check import Report
from worker.pipeline.kind import FileKind, SmallFile, Summary
from worker.pipeline.results import formula_safe, write_csv_frames
from worker.pipeline.runtime import Runtime
from worker.settings import Settings
from worker.state import Connection, File, Store, numbers, remade
from worker.state import invoices as invoice_table

#: Created invoices above which the processing report sums chunk files, not the database.
TOTALS_FROM_CHUNKS_ABOVE = 20_000


class InvoiceFiles(FileKind):
    """One row, one payment-link invoice (PayFORT batch invoicing)."""

    name = "invoices"
    signature = Signature(
        "invoices",
        frozenset({"merchant_reference", "service_command", "customer_email"}),
        REQUIRED_COLUMNS,
    )
    result_suffix = ".results.csv"
    reports_validation = True
    error_rate_applies = True
    groups_small_files = True

    def context(self, rt: Runtime) -> Context:
        return context.for_settings(rt.settings)

    def validate(self, rt: Runtime, file: File, table: Table) -> Summary:
        exists = existing.existing_invoices(rt.store)
        return validation.validate_to(
            table, self.context(rt), rt.work(file), rt.settings.chunk_rows, exists
        )

    def validate_many(self, rt: Runtime, small_files: list[SmallFile]) -> list[Summary]:
        """Files of one chunk each (``raw``, read from ``table``), validated together."""
        exists = existing.existing_invoices(rt.store)
        small = [validation.Small(table, raw, rt.work(file)) for file, table, raw in small_files]
        return validation.validate_many(small, self.context(rt), exists)

    def reserve(self, rt: Runtime, conn: Connection, summary: Summary) -> int | None:
        return numbers.reserve_invoice_numbers(conn, summary.valid)

    def process(self, rt: Runtime, file: File, renew: Callable[[], None]) -> None:
        if file.number_base is None:
            # Numbers are reserved when the file is validated, before it may be processed.
            raise StateError(f"file {file.id} has no invoice numbers reserved")
        processing.process_chunks(
            rt.store,
            file.id,
            chunks.paths(rt.work(file)),
            file.number_base,
            rt.settings.payment_link_base,
            renew,
        )

    def release(self, rt: Runtime, conn: Connection, file: File) -> None:
        invoice_table.release_emails(conn, file.id)

    def forget(self, rt: Runtime, conn: Connection, file: File) -> int:
        # Validating again draws new tokens, so the invoices the lost chunks made go:
        # nobody has their links yet. The pipeline asks only while the results file
        # (which comes once all are made) is not written.
        return remade.forget_invoices(conn, file.id)

    def processed_counts(self, rt: Runtime, file: File) -> dict[str, int]:
        # Those found at validation and at processing (the same as an invoice made since).
        return {"existing": invoice_table.existing_count(rt.store, file.id)}

    def _late(self, rt: Runtime, file_id: int) -> pl.DataFrame:
        return pl.DataFrame(
            invoice_table.late_rejections(rt.store, file_id),
            schema={"line_number": pl.UInt32, "code": pl.String},
            orient="row",
        )

    def write_results(self, rt: Runtime, file: File, target: Path, created: bool) -> None:
        late = self._late(rt, file.id)
        base = file.number_base if created else None
        link = rt.settings.payment_link_base
        # Processed, its existing rows are recorded (with those found at processing).
        found = invoice_table.existing_rows(rt.store, file.id) if created else None

        def frames() -> Iterator[pl.DataFrame]:
            for _, chunk in chunks.read_all(rt.work(file), columns=RESULT_INPUTS):
                yield invoice_result_rows(chunk, base, link, late, found)

        write_csv_frames(target, frames(), INVOICE_RESULT_COLUMNS)

    def errors_csv(self, rt: Runtime, file: File) -> bytes | None:
        frame = chunks.rows_where(
            rt.work(file),
            validation.REJECTED,
            [
                "line_number",
                formula_safe(pl.col("merchant_reference")).alias("merchant_reference"),
                "errors",
            ],
        )
        if frame.is_empty():
            return None
        buffer = io.BytesIO()
        frame.write_csv(buffer, line_terminator="\r\n")
        return buffer.getvalue()

    def processing_report(self, rt: Runtime, file: File) -> Prepared:
        totals, emails, sms = self._tallies(rt, file)
        late = invoice_table.late_rejection_count(rt.store, file.id)
        return reports.processing(
            rt.envelope,
            {"id": file.id, "name": file.name, "kind": self.name},
            created=file.created or 0,
            rejected=(file.rejected or 0) + late,
            existing=file.existing or 0,
            currency_totals=totals,
            result_name=f"{file.result_name}{self.result_suffix}",
            emails=emails,
            sms=sms,
        )

    def check(self, settings: Settings, table: Table, store: Store | None) -> Report:
        return check.invoices(settings, table, store)

    def template(self, expiry: datetime) -> tuple[list[str], list[str]]:
        header = [c.name for c in INVOICE_COLUMNS]
        example = {c.name: c.example for c in INVOICE_COLUMNS}
        example["request_expiry_date"] = expiry.strftime("%Y-%m-%dT23:59:00+00:00")
        return header, [example[name] for name in header]

    def _tallies(self, rt: Runtime, file: File) -> tuple[list[tuple[str, int, int]], int, int]:
        """Invoices created and their sum per currency, and how many asked for an email and
        an SMS. For a large file, counted from the chunk files less the late rejections:
        asking the database reads every invoice of the file back (0.7 s a million). For a
        small one the database answers sooner."""
        paths = chunks.paths(rt.work(file))
        if not paths or (file.created or 0) < TOTALS_FROM_CHUNKS_ABOVE:
            rows = invoice_table.tallies(rt.store, file.id)
            totals = [(r.currency, r.n, r.total) for r in rows]
            return totals, sum(r.emails for r in rows), sum(r.sms for r in rows)
        # Valid rows not created: rejected late, or the same as an invoice made meanwhile.
        late = pl.concat(
            [
                self._late(rt, file.id).select("line_number"),
                invoice_table.existing_rows(rt.store, file.id).select("line_number"),
            ]
        )
        wants = "," + pl.col("notification_type") + ","
        parts = [
            chunks.read(
                path, columns=["valid", "line_number", "currency", "amount", "notification_type"]
            )
            .filter(pl.col("valid"))
            .join(late, on="line_number", how="anti")
            .group_by("currency")
            .agg(
                n=pl.len().cast(pl.Int64),
                total=pl.col("amount").sum(),
                emails=wants.str.contains(",EMAIL,", literal=True).sum(),
                sms=wants.str.contains(",SMS,", literal=True).sum(),
            )
            for _, path in paths
        ]
        sums = pl.concat(parts).group_by("currency").agg(pl.all().sum()).sort("currency")
        totals = [(c, int(n), int(t)) for c, n, t in sums.select("currency", "n", "total").rows()]
        return totals, int(sums["emails"].sum()), int(sums["sms"].sum())
