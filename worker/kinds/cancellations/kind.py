"""Cancellation files: each row cancels an invoice, or a batch invoice and releases its
invoices.

Validation checks formats into chunk files; processing decides and applies each
chunk in one transaction (``cancelling``), recording the chunk's decisions
with its done mark (``worker.pipeline.deciding``), so the results file always
tells what was committed. Merchant webhooks recorded with the cancellations are
delivered after, by the ``deliver_webhooks`` actor.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from notifications import cancellation_reports
from notifications.prepared import Prepared
from rules import cancellations as rules
from rules.columns import Context
from worker.intake.readers import Signature, Table
from worker.kinds import context
from worker.kinds.cancellations import cancelling, check
from worker.pipeline import chunks, deciding
from worker.pipeline.check import Report
from worker.pipeline.kind import FileKind, Summary
from worker.pipeline.results import formula_safe, write_csv_frames
from worker.pipeline.runtime import Runtime
from worker.settings import Settings
from worker.state import Connection, File, Store, cancellations
from worker.state.files import now_iso

FIRST_ROWS = 20
#: Texts from the file in the results and the attachment.
TEXT_COLUMNS = ("invoice_number", "merchant_reference")


class CancellationFiles(FileKind):
    """Each row cancels an invoice; a cancelled batch releases its invoices."""

    name = "cancellations"
    # Any header naming invoices and no other kind's columns: a broken invoice or
    # payment file is never taken for cancellations.
    signature = Signature(
        "cancellations",
        frozenset({"invoice_number", "merchant_reference"}),
        (),
        unless=rules.OTHER_KINDS_COLUMNS,
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
        validator = cancelling.CancellationValidator(self.context(rt))
        for index, chunk in enumerate(validator.run(table, rt.settings.chunk_rows)):
            chunks.write(folder, index, chunk, "chunk")
        return validator.summary

    def process(self, rt: Runtime, file: File, renew: Callable[[], None]) -> None:
        ctx = self.context(rt)

        def step(conn: Connection, chunk: pl.DataFrame) -> tuple[pl.DataFrame, int]:
            invoices, here = cancelling.state(conn, chunk, file.id)
            decided = cancelling.decide(chunk, invoices, here, ctx)
            return cancelling.results(decided), cancelling.apply(conn, file.id, decided, now_iso())

        deciding.apply_chunks(rt, file, renew, step)

    def _decided(self, rt: Runtime, file: File) -> Iterator[pl.DataFrame]:
        return deciding.results(rt, file)

    def write_results(self, rt: Runtime, file: File, target: Path, created: bool) -> None:
        safe = [formula_safe(pl.col(c)).alias(c) for c in TEXT_COLUMNS]
        frames = (d.with_columns(safe) for d in self._decided(rt, file))
        write_csv_frames(target, frames, cancelling.RESULT_COLUMNS)

    def _rejected(self, rt: Runtime, file: File) -> pl.DataFrame:
        return deciding.rejected(rt, file, cancelling.RESULT_COLUMNS)

    def errors_csv(self, rt: Runtime, file: File) -> bytes | None:
        rejected = self._rejected(rt, file)
        if rejected.is_empty():
            return None
        buffer = io.BytesIO()
        rejected.select(
            "line_number", *[formula_safe(pl.col(c)).alias(c) for c in TEXT_COLUMNS], "errors"
        ).write_csv(buffer, line_terminator="\r\n")
        return buffer.getvalue()

    def check(self, settings: Settings, table: Table, store: Store | None) -> Report:
        return check.cancellations(settings, table, store)

    def template(self, expiry: datetime) -> tuple[list[str], list[str]]:
        columns = rules.CANCELLATION_COLUMNS
        return [c.name for c in columns], [c.example for c in columns]

    def processing_report(self, rt: Runtime, file: File) -> Prepared:
        rejected = self._rejected(rt, file)
        batches, released = cancellations.batch_counts(rt.store, file.id)
        named = pl.coalesce("invoice_number", "merchant_reference").fill_null("-")
        return cancellation_reports.cancellations(
            rt.envelope,
            {"id": file.id, "name": file.name, "kind": self.name},
            cancelled=file.created or 0,
            rejected=len(rejected),
            batches_cancelled=batches,
            invoices_released=released,
            first_errors=rejected.head(FIRST_ROWS).select("line_number", named, "errors").rows(),
            currency_totals=cancellations.currency_totals(rt.store, file.id),
            result_name=f"{file.result_name}{self.result_suffix}",
            errors_csv=self.errors_csv(rt, file),
        )
