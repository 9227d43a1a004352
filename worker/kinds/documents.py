"""Invoices as the outside sees them: IremboPay's response fields, built in polars.

One shape for a created batch (under ``data`` in a batch results file) and
for a paid invoice (the merchant webhook's ``data``), so the two never drift.
Invoice numbers are strings, as IremboPay sends them; amounts are integers in
the currency's minor units; times are RFC 3339 UTC. The rows come from
``worker.state.lookups``; this module only shapes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from rules import values
from worker.state import Connection, lookups

INVOICE_SCHEMA: dict[str, pl.DataType] = {
    "invoice_number": pl.Int64(),
    "merchant_reference": pl.String(),
    "transaction_id": pl.String(),
    "type": pl.String(),
    "status": pl.String(),
    "amount": pl.Int64(),
    "currency": pl.String(),
    "language": pl.String(),
    "expires_at": pl.String(),
    "order_description": pl.String(),
    "description": pl.String(),
    "payment_account": pl.String(),
    "payment_link_url": pl.String(),
    "batch_number": pl.Int64(),
    "created_at": pl.String(),
    "updated_at": pl.String(),
    "paid_at": pl.String(),
}
CHILD_SCHEMA: dict[str, pl.DataType] = {
    "batch_number": pl.Int64(),
    "invoice_number": pl.Int64(),
    "merchant_reference": pl.String(),
    "amount": pl.Int64(),
    "currency": pl.String(),
    "order_description": pl.String(),
}
UTC_SECONDS = "%Y-%m-%dT%H:%M:%SZ"


def frame(rows: Sequence[tuple[Any, ...]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """State rows as a frame of ``schema`` (the rows' columns, in its order)."""
    return pl.DataFrame(rows, schema=schema, orient="row")


def invoices(conn: Connection, numbers: Iterable[int]) -> pl.DataFrame:
    """The invoices with these numbers, each with its ``children`` and ``items`` (batches)."""
    wanted = list(numbers)
    found = frame(lookups.invoices(conn, wanted, list(INVOICE_SCHEMA)), INVOICE_SCHEMA)
    children = frame(lookups.linked(conn, wanted, list(CHILD_SCHEMA)), CHILD_SCHEMA)
    linked = children.group_by("batch_number", maintain_order=True).agg(
        pl.col("invoice_number").cast(pl.String).alias("children"),
        pl.struct(
            pl.col("invoice_number").cast(pl.String).alias("invoiceNumber"),
            pl.col("merchant_reference").alias("merchantReference"),
            "amount",
            "currency",
            pl.col("order_description").alias("description"),
        ).alias("items"),
    )
    return found.join(
        linked.rename({"batch_number": "invoice_number"}), on="invoice_number", how="left"
    )


def _utc(column: str) -> pl.Expr:
    return values.instant(pl.col(column)).dt.strftime(UTC_SECONDS)


def invoice_doc() -> pl.Expr:
    """The IremboPay response fields of each invoice of an :func:`invoices` frame, a struct."""
    number = pl.col("invoice_number").cast(pl.String)
    batch = pl.col("type") == "BATCH"
    return pl.struct(
        number.alias("invoiceNumber"),
        pl.col("transaction_id").alias("transactionId"),
        pl.col("merchant_reference").alias("merchantReference"),
        pl.col("payment_account").alias("paymentAccountIdentifier"),
        pl.col("items").alias("paymentItems"),
        pl.col("status").alias("paymentStatus"),
        "amount",
        "currency",
        "type",
        _utc("created_at").alias("createdAt"),
        _utc("updated_at").alias("updatedAt"),
        _utc("expires_at").alias("expiryAt"),
        _utc("paid_at").alias("paidAt"),
        pl.coalesce("description", "order_description").alias("description"),
        pl.col("children").alias("childInvoices"),
        pl.col("language"),
        # A batch's own number; a linked invoice's batch. Null for an invoice in none.
        pl.when(batch)
        .then(number)
        .otherwise(pl.col("batch_number").cast(pl.String))
        .alias("batchNumber"),
        pl.col("payment_link_url").alias("paymentLinkUrl"),
    )


def invoice_docs(conn: Connection, numbers: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Invoice number -> its document, as plain data (for a handful of invoices)."""
    found = invoices(conn, numbers)
    encoded = found.select("invoice_number", invoice_doc().struct.json_encode().alias("doc"))
    return {n: json.loads(doc) for n, doc in encoded.iter_rows()}
