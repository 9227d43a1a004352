"""The results file of an invoice file: one line per row, CREATED or REJECTED."""

from __future__ import annotations

import polars as pl

from worker.kinds.links import link_expr
from worker.pipeline.results import formula_safe

INVOICE_RESULT_COLUMNS = (
    "line_number",
    "merchant_reference",
    "status",
    "errors",
    "invoice_number",
    "payment_link_url",
    "amount",
    "currency",
)


def invoice_result_rows(
    chunk: pl.DataFrame, number_base: int | None, link_base: str, late: pl.DataFrame | None
) -> pl.DataFrame:
    """One result line per row of a validated chunk, in input order. ``number_base`` is
    None when no invoice was created (the file had too many errors); ``late`` holds the
    rows rejected at processing (``line_number``, ``code``)."""
    frame = chunk
    if late is not None and not late.is_empty():
        frame = frame.join(late, on="line_number", how="left").with_columns(
            valid=pl.col("valid") & pl.col("code").is_null(),
            errors=pl.when(pl.col("code").is_not_null())
            .then(pl.col("code") + "(merchant_reference)")
            .otherwise(pl.col("errors")),
        )
    created = pl.col("valid") & pl.lit(number_base is not None)
    return frame.select(
        "line_number",
        formula_safe(pl.col("merchant_reference")).alias("merchant_reference"),
        pl.when(created).then(pl.lit("CREATED")).otherwise(pl.lit("REJECTED")).alias("status"),
        pl.col("errors").replace("", None),
        pl.when(created).then(pl.col("ordinal") + (number_base or 0)).alias("invoice_number"),
        pl.when(created).then(link_expr(link_base)).alias("payment_link_url"),
        formula_safe(
            pl.when(pl.col("valid"))
            .then(pl.col("amount").cast(pl.String))
            .otherwise(pl.col("amount_text"))
        ).alias("amount"),
        formula_safe(
            pl.when(pl.col("valid")).then(pl.col("currency")).otherwise(pl.col("currency_text"))
        ).alias("currency"),
    )
