"""What an invoice row is, written plainly in polars: the oracle processing is held to.

Processing builds its rows in SQL (``worker.state.invoices``) for speed; this says
the same thing column by column, so a test can compare the two, and the benchmark's
floors load exactly these rows.
"""

from __future__ import annotations

import polars as pl

from worker.kinds.links import link_expr
from worker.state.files import now_iso


def invoice_rows(
    chunk: pl.DataFrame, file_id: int, number_base: int, link_base: str
) -> pl.DataFrame:
    """The valid rows of a validated chunk, shaped as ``invoices`` rows."""
    stamp = now_iso()
    wants = pl.col("notification_type").str.split(",")
    return chunk.filter(pl.col("valid")).select(
        (pl.col("ordinal") + number_base).alias("invoice_number"),
        "merchant_reference",
        pl.lit(file_id).alias("file_id"),
        "line_number",
        pl.lit("SINGLE").alias("type"),
        pl.lit("NEW").alias("status"),
        "amount",
        "currency",
        "language",
        "customer_email",
        "customer_name",
        "customer_phone",
        "notification_type",
        "expires_at",
        "order_description",
        "payment_account",
        "link_command",
        "return_url",
        "token",
        link_expr(link_base).alias("payment_link_url"),
        pl.when(wants.list.contains("EMAIL")).then(pl.lit("pending")).alias("email_state"),
        pl.when(wants.list.contains("SMS")).then(pl.lit("pending")).alias("sms_state"),
        pl.lit(stamp).alias("created_at"),
        pl.lit(stamp).alias("updated_at"),
    )
