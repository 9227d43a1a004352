"""Cancellation rows: checked in polars, applied one chunk per transaction.

Validation checks each row's format (``rules.cancellations`` without state) and
writes chunk files. Processing decides a chunk inside its ``BEGIN IMMEDIATE``
transaction: it joins each row with the invoice it names (by number, by merchant
reference, or both), applies every rule at once over the chunk, and, for the rows
that pass, marks the invoice CANCELLED, releases a cancelled batch's invoices,
records the cancellation and one merchant webhook per cancelled invoice (for a
batch, the batch only). The decision file, those writes and the chunk's done-mark
commit together.

Rows of one file may depend on earlier rows, resolved without a loop per row:
the first row that passes for an invoice cancels it and later rows for it are
``DUPLICATE_IN_FILE``; a row after the one that cancels a batch finds that
batch's invoices released (a second pass over the chunk, which only ever changes
rows naming those invoices).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from rules import cancellations as rules
from rules.columns import Context
from worker.errors import StateError
from worker.intake.readers import Table
from worker.kinds import documents
from worker.pipeline import frames
from worker.pipeline.kind import Summary
from worker.state import Connection, cancellations, webhooks

STATE_SCHEMA: dict[str, pl.DataType] = {
    "invoice_number": pl.Int64(),
    "merchant_reference": pl.String(),
    "type": pl.String(),
    "status": pl.String(),
    "batch_number": pl.Int64(),
    "amount": pl.Int64(),
    "currency": pl.String(),
}
RESULT_COLUMNS = ("line_number", "invoice_number", "merchant_reference", "status", "errors")


@dataclass(frozen=True)
class Earlier:
    """What earlier chunks of the file did that the state does not show
    (``invoice-worker validate`` writes nothing between chunks)."""

    cancelled: frozenset[int] = frozenset()
    released: frozenset[int] = frozenset()


# -- validation ------------------------------------------------------------------


class CancellationValidator:
    """Checks formats chunk by chunk (whether a row names an invoice, the reason's length)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.summary = Summary()
        self._format = rules.errors_expr(ctx, with_state=False)

    def chunk(self, raw: pl.DataFrame) -> pl.DataFrame:
        checked = frames.prepare(raw, rules.COLUMN_NAMES).with_columns(format_errors=self._format)
        self.summary.count(
            checked,
            pl.col("format_errors") != "",
            ("line_number", "merchant_reference", "format_errors"),
        )
        return checked

    def run(self, table: Table, chunk_rows: int) -> Iterator[pl.DataFrame]:
        self.summary.unknown_columns = frames.unknown_columns(table, rules.COLUMN_NAMES)
        for raw in table.batches(chunk_rows):
            yield self.chunk(raw)


# -- deciding --------------------------------------------------------------------


def _numbers() -> pl.Expr:
    text = pl.col("invoice_number")
    return pl.when(text.str.contains(r"^[0-9]{1,18}$")).then(text.cast(pl.Int64, strict=False))


def state(
    conn: Connection | None, chunk: pl.DataFrame, file_id: int | None
) -> tuple[pl.DataFrame, frozenset[int]]:
    """The invoices a chunk names, and those of them this file already cancelled."""
    if conn is None:
        return pl.DataFrame(schema=STATE_SCHEMA), frozenset()
    numbers = chunk.select(_numbers().drop_nulls().unique()).to_series().to_list()
    refs = chunk["merchant_reference"].drop_nulls().unique().to_list()
    rows = cancellations.by_number(conn, numbers) + cancellations.by_reference(conn, refs)
    found = documents.frame(rows, STATE_SCHEMA).unique("invoice_number", maintain_order=True)
    here: list[int] = []
    if file_id is not None:
        here = cancellations.cancelled_by_file(conn, file_id, found["invoice_number"].to_list())
    return found, frozenset(here)


def _first_cancels(frame: pl.DataFrame, full: pl.Expr) -> pl.DataFrame:
    """Errors of every row; the first row that passes for an invoice cancels it."""
    passes = pl.col("_passes")
    frame = (
        frame.with_columns(_cancelled_earlier=pl.lit(False))
        .with_columns(_passes=(full == "").cast(pl.Int32))
        .with_columns(_cancels=passes * (passes.cum_sum().over("_invoice") == 1).cast(pl.Int32))
        .with_columns(
            _cancelled_earlier=(pl.col("_cancels").cum_sum().over("_invoice") - pl.col("_cancels"))
            > 0
        )
    )
    return (
        frame.with_columns(errors=full)
        .with_columns(applied=pl.col("errors") == "")
        .drop("_passes", "_cancels")
    )


def decide(
    chunk: pl.DataFrame,
    invoices: pl.DataFrame,
    cancelled_here: frozenset[int],
    ctx: Context,
    earlier: Earlier = Earlier(),
) -> pl.DataFrame:
    """Every row's errors under the state given; ``applied`` for the rows that cancel."""
    by_reference = invoices.select(
        "merchant_reference", pl.col("invoice_number").alias("_by_reference")
    ).drop_nulls("merchant_reference")
    found = invoices.select(
        pl.col("invoice_number").alias("_invoice"),
        pl.col("merchant_reference").alias("_reference"),
        pl.col("type").alias("_type"),
        pl.col("status").alias("_status"),
        pl.col("batch_number").alias("_batch_number"),
        pl.col("amount").alias("_amount"),
        pl.col("currency").alias("_currency"),
    )
    here = sorted(cancelled_here | earlier.cancelled)
    number = pl.col("_number")
    frame = (
        chunk.with_columns(_number=_numbers())
        .with_columns(_by_number=pl.when(number.is_in(found["_invoice"].implode())).then(number))
        .join(by_reference, on="merchant_reference", how="left", maintain_order="left")
        .with_columns(_invoice=pl.coalesce("_by_number", "_by_reference"))
        .join(found, on="_invoice", how="left", maintain_order="left")
        .with_columns(
            _cancelled_here=pl.col("_invoice").is_in(here).fill_null(False),
            _status=pl.when(pl.col("_invoice").is_in(sorted(earlier.cancelled)))
            .then(pl.lit("CANCELLED"))
            .otherwise(pl.col("_status")),
            _batch_number=pl.when(pl.col("_invoice").is_in(sorted(earlier.released)))
            .then(None)
            .otherwise(pl.col("_batch_number")),
        )
    )
    full = rules.errors_expr(ctx, with_state=True)
    frame = _first_cancels(frame, full)
    # A batch cancelled by a row releases its invoices for the rows after it.
    batches = frame.filter(pl.col("applied") & (pl.col("_type") == "BATCH")).select(
        pl.col("_invoice").alias("_batch_number"), pl.col("line_number").alias("_released_at")
    )
    if batches.is_empty():
        return frame
    frame = frame.join(batches, on="_batch_number", how="left", maintain_order="left")
    frame = frame.with_columns(
        _batch_number=pl.when(pl.col("_released_at") < pl.col("line_number"))
        .then(None)
        .otherwise(pl.col("_batch_number"))
    ).drop("_released_at", "errors", "applied")
    return _first_cancels(frame, full)


def results(decided: pl.DataFrame) -> pl.DataFrame:
    """The results file's columns (texts as given, not yet formula-safe); a column left
    blank is filled from the invoice the other one named."""
    return decided.select(
        "line_number",
        pl.coalesce("invoice_number", pl.col("_invoice").cast(pl.String)).alias("invoice_number"),
        pl.coalesce(
            "merchant_reference", pl.when(pl.col("_by_number").is_not_null()).then("_reference")
        ).alias("merchant_reference"),
        pl.when(pl.col("applied"))
        .then(pl.lit("CANCELLED"))
        .otherwise(pl.lit("REJECTED"))
        .alias("status"),
        pl.col("errors").replace("", None),
    )


# -- applying --------------------------------------------------------------------


def apply(conn: Connection, file_id: int, decided: pl.DataFrame, stamp: str) -> int:
    """Cancel the chunk's applied rows' invoices, release cancelled batches' invoices,
    record the cancellations and their webhooks; returns the count."""
    rows = decided.filter(pl.col("applied")).select(
        pl.col("_invoice").alias("invoice_number"),
        "line_number",
        pl.col("_type").alias("type"),
        pl.col("_amount").alias("amount"),
        pl.col("_currency").alias("currency"),
        "reason",
    )
    if rows.is_empty():
        return 0
    batch = pl.col("type") == "BATCH"
    # Batches first: their documents list the invoices they release, and a later row
    # may cancel one of those alone once released.
    docs = _cancel(conn, rows.filter(batch), stamp)
    cancellations.release(conn, rows.filter(batch)["invoice_number"].to_list(), stamp)
    docs = pl.concat([docs, _cancel(conn, rows.filter(~batch), stamp)], how="vertical_relaxed")
    # The rows' type, amount and currency are the documents' own: one copy is kept.
    joined = rows.join(docs.drop("type", "amount", "currency"), on="invoice_number", how="left")
    quoted = pl.lit('"') + pl.element() + pl.lit('"')
    released = pl.lit("[") + pl.col("children").list.eval(quoted).list.join(",") + pl.lit("]")
    cancellations.record(
        conn,
        joined.select(
            "invoice_number",
            pl.lit(file_id).alias("file_id"),
            "line_number",
            "type",
            "amount",
            "currency",
            "reason",
            released.fill_null("[]").alias("released"),
            pl.lit(stamp).alias("cancelled_at"),
        ).iter_rows(),
    )
    webhooks.record(conn, _webhooks(joined, stamp).iter_rows(), event=webhooks.CANCELLED)
    return len(rows)


def _cancel(conn: Connection, rows: pl.DataFrame, stamp: str) -> pl.DataFrame:
    """Mark these invoices CANCELLED; their documents as they now are."""
    numbers = rows["invoice_number"].to_list()
    marked = cancellations.mark_cancelled(conn, numbers, stamp) if numbers else 0
    if marked != len(numbers):
        # The rules were checked under this same write lock: this cannot happen.
        raise StateError(f"cancelled {marked} of {len(numbers)} invoices")
    return documents.invoices(conn, numbers)


def _webhooks(joined: pl.DataFrame, stamp: str) -> pl.DataFrame:
    """One ``invoice.cancelled`` per cancelled invoice: a batch's invoices get none."""
    cancellation = pl.struct(pl.col("reason"), pl.lit(stamp).alias("cancelledAt"))
    return joined.select(
        (pl.lit("cancel:") + pl.col("invoice_number").cast(pl.String)).alias("key"),
        "invoice_number",
        pl.struct(
            pl.lit(webhooks.CANCELLED).alias("event"),
            cancellation.alias("cancellation"),
            documents.invoice_doc().alias("data"),
        )
        .struct.json_encode()
        .cast(pl.Binary)
        .alias("body"),
        pl.lit(stamp).alias("created_at"),
    )
