"""Sending a corrected file again (SPEC 13): rows against the invoices that have their
references, at validation and again at processing.

Whether a row is the same as an invoice is the rules' to say (``rules.invoices``:
``SAME_CONTENT``, ``same_content``); this module fetches the invoices a chunk names,
in one query per chunk, and joins them beside its rows.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from rules.columns import Context
from rules.invoices import SAME_CONTENT, same_as_stored, same_content
from worker.state import Connection, Store
from worker.state import invoices as invoice_table

#: The invoices that have some of a chunk's references: ``merchant_reference``,
#: ``invoice_number``, ``payment_link_url`` and the fields of ``SAME_CONTENT``; None when
#: no invoice has any of them.
ExistsCheck = Callable[[pl.Series], pl.DataFrame | None]
#: Prefix of an invoice's fields, joined beside a chunk's rows.
STORED = "_stored_"


def existing_invoices(store: Store) -> ExistsCheck:
    """A check for the validator: the invoices that have some of a chunk's references."""

    def check(refs: pl.Series) -> pl.DataFrame | None:
        if not invoice_table.any_referenced(store):
            return None
        wanted = refs.drop_nulls().unique().to_list()
        return invoice_table.stored(store.conn, wanted, SAME_CONTENT)

    return check


def _beside(invoices: pl.DataFrame) -> pl.LazyFrame:
    return invoices.lazy().select(
        "merchant_reference",
        pl.col("invoice_number").alias("_number"),
        pl.col("payment_link_url").alias("_link"),
        *(pl.col(name).alias(STORED + name) for name in SAME_CONTENT),
    )


def _stored(name: str) -> pl.Expr:
    return pl.col(STORED + name)


def against(query: pl.LazyFrame, invoices: pl.DataFrame | None, ctx: Context) -> pl.LazyFrame:
    """``query`` (rows as read, with ``_seen_in_file``) beside the ``invoices`` that have
    their references: ``_exists`` where one has other content (MERCHANT_REFERENCE_EXISTS),
    and where one has the same content and the reference is the file's first, its number
    and link (``existing``, ``existing_link``)."""
    if invoices is None or invoices.is_empty():
        return query.with_columns(
            _exists=pl.lit(False),
            existing=pl.lit(None, pl.Int64),
            existing_link=pl.lit(None, pl.String),
        )
    taken = pl.col("_number").is_not_null()
    same = taken & same_as_stored(ctx, _stored)
    # A reference repeated in the file is a duplicate there, whatever its content.
    first_same = same & ~pl.col("_seen_in_file")
    return (
        query.join(_beside(invoices), on="merchant_reference", how="left", maintain_order="left")
        .with_columns(_exists=taken & ~same, _same=first_same)
        .with_columns(
            existing=pl.when("_same").then("_number"),
            existing_link=pl.when("_same").then("_link"),
        )
    )


def settle(conn: Connection, rows: pl.DataFrame) -> pl.DataFrame:
    """Of ``rows`` (normalised invoice rows) whose references were invoiced after they
    were validated, the invoice each is the same as; null where it differs. Run inside
    the chunk's transaction (``worker.state.invoices.Settle``)."""
    refs = rows["merchant_reference"].unique().to_list()
    invoices = invoice_table.stored(conn, refs, SAME_CONTENT)
    same = pl.col("_number").is_not_null() & same_content(pl.col, _stored)
    return (
        rows.lazy()
        .join(_beside(invoices), on="merchant_reference", how="left", maintain_order="left")
        .select("line_number", pl.when(same).then("_number").alias("invoice_number"))
        .collect()
    )
