"""Payment rows: checked in polars, applied one chunk per transaction.

Validation checks each row's format (``rules.payments`` without state) and
writes chunk files, like invoice files. Processing decides a chunk inside its
``BEGIN IMMEDIATE`` transaction: it joins each row with the state of the
invoice it names, applies every rule at once over the chunk, and, for the rows
that pass, records the payment, marks the invoice PAID (a batch's linked
invoices too, rule 9) and records one merchant webhook for the paid invoice
(never for the linked ones). The decision file, the payments, the webhooks
and the chunk's done-mark commit together.

Rows of one file may depend on earlier rows: a second payment of the same
invoice finds it paid. That is resolved without a loop per row: the first row
that passes every other rule for an invoice pays it, and every later row for
the invoice is ``ALREADY_PAID``.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from rules import payments as rules
from rules import values
from rules.columns import Context
from worker.intake.readers import Table
from worker.kinds import documents
from worker.pipeline import frames
from worker.pipeline.kind import Summary
from worker.state import Connection, lookups, payments, webhooks
from worker.state.files import now_iso

STATE_SCHEMA: dict[str, pl.DataType] = {
    "_invoice": pl.Int64(),
    "_type": pl.String(),
    "_status": pl.String(),
    "_amount": pl.Int64(),
    "_currency": pl.String(),
    "_expires_at": pl.String(),
    "_batch_number": pl.Int64(),
}
#: The invoices' columns behind ``STATE_SCHEMA``, in its order.
STATE_COLUMNS = (
    "invoice_number",
    "type",
    "status",
    "amount",
    "currency",
    "expires_at",
    "batch_number",
)
RESULT_COLUMNS = ("line_number", "payment_reference", "invoice_number", "status", "errors")
UTC_SECONDS = documents.UTC_SECONDS


# -- validation ------------------------------------------------------------------


class PaymentValidator:
    """Checks formats chunk by chunk, remembering payment references across chunks."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.seen = pl.Series("payment_reference", [], pl.String)
        self.summary = Summary()
        self._format = rules.errors_expr(ctx, with_state=False)

    def chunk(self, raw: pl.DataFrame) -> pl.DataFrame:
        frame = frames.prepare(raw, rules.COLUMN_NAMES)
        refs = frame["payment_reference"]
        seen = (~refs.is_first_distinct() | refs.is_in(self.seen.implode())).fill_null(False)
        self.seen = pl.concat([self.seen, refs.drop_nulls().unique()], rechunk=True)
        checked = frame.with_columns(_seen_in_file=seen).with_columns(format_errors=self._format)
        self.summary.count(
            checked,
            pl.col("format_errors") != "",
            ("line_number", "payment_reference", "format_errors"),
        )
        return checked

    def run(self, table: Table, chunk_rows: int) -> Iterator[pl.DataFrame]:
        self.summary.unknown_columns = frames.unknown_columns(table, rules.COLUMN_NAMES)
        for raw in table.batches(chunk_rows):
            yield self.chunk(raw)


# -- deciding --------------------------------------------------------------------


def _invoice_numbers(chunk: pl.DataFrame) -> pl.Expr:
    text = pl.col("invoice_number")
    return pl.when(text.str.contains(r"^[0-9]{1,18}$")).then(text.cast(pl.Int64, strict=False))


def state(conn: Connection | None, chunk: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """The invoices a chunk names (``_``-prefixed columns) and the references already used."""
    if conn is None:
        return pl.DataFrame(schema=STATE_SCHEMA), pl.Series("ref", [], pl.String)
    numbers = chunk.select(_invoice_numbers(chunk).drop_nulls().unique()).to_series()
    rows = lookups.invoices(conn, numbers.to_list(), STATE_COLUMNS)
    refs = chunk["payment_reference"].drop_nulls().unique().to_list()
    used = payments.used_references(conn, refs)
    return documents.frame(rows, STATE_SCHEMA), pl.Series("ref", used, pl.String)


def decide(
    chunk: pl.DataFrame,
    invoices: pl.DataFrame,
    used: pl.Series,
    ctx: Context,
    paid_before: frozenset[int] = frozenset(),
) -> pl.DataFrame:
    """Every row's errors under the state given; ``applied`` for the rows that pay.

    ``paid_before``: invoices paid by earlier chunks that the state does not show
    (``invoice-worker validate`` writes nothing between chunks)."""
    frame = (
        chunk.with_columns(_invoice=_invoice_numbers(chunk))
        .join(invoices, on="_invoice", how="left")
        .with_columns(
            _found=pl.col("_type").is_not_null(),
            _status=pl.when(pl.col("_invoice").is_in(sorted(paid_before)))
            .then(pl.lit("PAID"))
            .otherwise(pl.col("_status")),
            _expires_at=values.instant(pl.col("_expires_at")),
            _reference_exists=pl.col("payment_reference").is_in(used.implode()).fill_null(False),
            _paid_earlier=pl.lit(False),
        )
    )
    full = rules.errors_expr(ctx, with_state=True)
    passes = pl.col("_passes")
    # The first row that passes pays the invoice; later rows for it find it paid.
    frame = (
        frame.with_columns(_passes=(full == "").cast(pl.Int32))
        .with_columns(_pays=passes * (passes.cum_sum().over("_invoice") == 1).cast(pl.Int32))
        .with_columns(
            _paid_earlier=(pl.col("_pays").cum_sum().over("_invoice") - pl.col("_pays")) > 0
        )
    )
    return frame.with_columns(errors=full).with_columns(applied=pl.col("errors") == "")


def results(decided: pl.DataFrame) -> pl.DataFrame:
    """The results file's columns (texts as given, not yet formula-safe)."""
    return decided.select(
        "line_number",
        "payment_reference",
        "invoice_number",
        pl.when(pl.col("applied"))
        .then(pl.lit("APPLIED"))
        .otherwise(pl.lit("REJECTED"))
        .alias("status"),
        pl.col("errors").replace("", None),
    )


# -- applying --------------------------------------------------------------------


def _paid(decided: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    return decided.filter(pl.col("applied")).select(
        "payment_reference",
        "line_number",
        pl.col("_invoice").alias("invoice_number"),
        values.amount(pl.col("amount")).alias("amount"),
        pl.col("currency").str.to_uppercase().alias("currency"),
        rules.paid_at(ctx).dt.strftime(UTC_SECONDS).alias("paid_at"),
        (pl.col("_type") == "BATCH").alias("batch"),
    )


def apply(conn: Connection, file_id: int, decided: pl.DataFrame, ctx: Context) -> int:
    """Record the chunk's applied payments, paid invoices and webhooks; returns the count."""
    paid = _paid(decided, ctx)
    if paid.is_empty():
        return 0
    stamp = now_iso()
    payments.record(
        conn,
        paid.select(
            "payment_reference",
            pl.lit(file_id).alias("file_id"),
            "line_number",
            "invoice_number",
            "amount",
            "currency",
            "paid_at",
            pl.lit(stamp).alias("created_at"),
        ).iter_rows(),
    )
    marks = paid.select("paid_at", pl.lit(stamp).alias("updated_at"), "invoice_number")
    payments.mark_paid(conn, marks.iter_rows())
    # Rule 9: a batch's linked invoices are paid with it.
    payments.mark_linked_paid(conn, marks.filter(paid["batch"]).iter_rows())
    _record_webhooks(conn, paid, stamp)
    return len(paid)


def _record_webhooks(conn: Connection, paid: pl.DataFrame, stamp: str) -> None:
    """One webhook per paid invoice (a batch, or a single invoice); none for linked ones."""
    docs = documents.invoices(conn, paid["invoice_number"].to_list())
    payment = pl.struct(
        pl.col("payment_reference").alias("paymentReference"),
        pl.col("amount").alias("amount"),
        pl.col("currency").alias("currency"),
        pl.col("paid_at").alias("paidAt"),
    )
    bodies = (
        paid.select("invoice_number", "payment_reference", payment.alias("payment"))
        .join(docs, on="invoice_number", how="left")
        .select(
            (pl.lit("payment:") + pl.col("payment_reference")).alias("key"),
            "invoice_number",
            pl.struct(
                pl.lit("invoice.paid").alias("event"),
                "payment",
                documents.invoice_doc().alias("data"),
            )
            .struct.json_encode()
            .cast(pl.Binary)
            .alias("body"),
            pl.lit(stamp).alias("created_at"),
        )
    )
    webhooks.record(conn, bodies.iter_rows())
