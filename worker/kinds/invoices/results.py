"""The results file of an invoice file: one line per row, CREATED, EXISTS or REJECTED."""

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
#: The columns of a validated chunk that its result lines are made of: read alone, not
#: the chunk's whole width (the descriptions, names and addresses are most of it).
RESULT_INPUTS = [
    "line_number",
    "merchant_reference",
    "errors",
    "valid",
    "ordinal",
    "token",
    "amount",
    "currency",
    "amount_text",
    "currency_text",
    "existing",
    "existing_link",
]


def invoice_result_rows(
    chunk: pl.DataFrame,
    number_base: int | None,
    link_base: str,
    late: pl.DataFrame | None,
    existing: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One result line per row of a validated chunk, in input order. ``number_base`` is
    None when no invoice was created (the file had too many errors); ``late`` holds the
    rows rejected at processing (``line_number``, ``code``). ``existing``, once the file
    is processed, holds its rows that name an invoice with the same content (SPEC 13),
    found at validation or at processing (``line_number``, ``existing``,
    ``existing_link``); before, the chunk's own columns say."""
    frame = chunk
    if existing is not None:
        frame = frame.drop("existing", "existing_link").join(
            existing, on="line_number", how="left", maintain_order="left"
        )
    if late is not None and not late.is_empty():
        frame = frame.join(late, on="line_number", how="left", maintain_order="left").with_columns(
            valid=pl.col("valid") & pl.col("code").is_null(),
            errors=pl.when(pl.col("code").is_not_null())
            .then(pl.col("code") + "(merchant_reference)")
            .otherwise(pl.col("errors")),
        )
    exists = pl.col("existing").is_not_null()
    created = pl.col("valid") & ~exists & pl.lit(number_base is not None)
    normal = pl.col("valid") | exists
    return frame.select(
        "line_number",
        formula_safe(pl.col("merchant_reference")).alias("merchant_reference"),
        pl.when(created)
        .then(pl.lit("CREATED"))
        .when(exists)
        .then(pl.lit("EXISTS"))
        .otherwise(pl.lit("REJECTED"))
        .alias("status"),
        pl.col("errors").replace("", None),
        pl.when(created)
        .then(pl.col("ordinal") + (number_base or 0))
        .otherwise(pl.col("existing"))
        .alias("invoice_number"),
        pl.when(created)
        .then(link_expr(link_base))
        .otherwise(pl.col("existing_link"))
        .alias("payment_link_url"),
        # An existing row's amount and currency are its invoice's: the same is the same.
        formula_safe(
            pl.when(normal).then(pl.col("amount").cast(pl.String)).otherwise(pl.col("amount_text"))
        ).alias("amount"),
        formula_safe(
            pl.when(normal).then(pl.col("currency")).otherwise(pl.col("currency_text"))
        ).alias("currency"),
    )
