"""Cancellation file columns and their rules, as data (SPEC 13, "Cancellation files").

A row names an invoice by ``invoice_number``, by ``merchant_reference``, or by both
(then they must name the same invoice). Like the payment columns, each column lists
its checks in reporting order and a row gets at most one code per column. The codes
about the invoice's state go on the column that named it: ``invoice_number`` when
given, else ``merchant_reference``.

State rules read helper columns the processing step joins in:

``_by_number`` / ``_by_reference`` (the invoice each column names, null when none),
``_status``, ``_batch_number`` (of the invoice the row names),
``_cancelled_here`` (this file cancelled it, in an earlier chunk) and
``_cancelled_earlier`` (an earlier row of the file cancels it).
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from rules import invoices, payments
from rules.columns import Column, Context, Rule
from rules.columns import errors_expr as joined_errors

REASON_MAX = 150
COLUMN_NAMES = ("invoice_number", "merchant_reference", "reason")
#: A header with any of these is another kind's (a broken invoice or payment file is
#: never read as a cancellation file: a cancellation cannot be undone).
OTHER_KINDS_COLUMNS = frozenset(
    {*invoices.COLUMN_NAMES, *payments.COLUMN_NAMES, "transaction_id", "description"}
) - set(COLUMN_NAMES)


def col(name: str) -> pl.Expr:
    return pl.col(name)


CANCELLATION_COLUMNS: tuple[Column, ...] = (
    Column(
        "invoice_number",
        required=False,
        # Neither column given: the row names no invoice.
        required_when=("REQUIRED", lambda ctx: col("merchant_reference").is_null()),
        example="100000000001",
    ),
    Column("merchant_reference", required=False, example=""),
    Column("reason", required=False, max_length=REASON_MAX, example="Order cancelled by customer"),
)


def _invoice_state_rules(named_here: pl.Expr) -> tuple[Rule, ...]:
    """The state of the invoice the row names, checked on the column that named it."""
    return (
        Rule(
            "ALREADY_PAID",
            "the invoice is paid: it cannot be cancelled",
            lambda ctx: named_here & (col("_status") == "PAID"),
        ),
        Rule(
            "ALREADY_CANCELLED",
            "the invoice was cancelled before",
            lambda ctx: named_here & (col("_status") == "CANCELLED") & ~col("_cancelled_here"),
        ),
        Rule(
            "INVOICE_IN_BATCH",
            "the invoice is in a batch: cancel the batch invoice instead",
            lambda ctx: named_here & col("_batch_number").is_not_null(),
        ),
        Rule(
            "DUPLICATE_IN_FILE",
            "an earlier row of this file cancels this invoice",
            lambda ctx: named_here & (col("_cancelled_here") | col("_cancelled_earlier")),
        ),
    )


#: Rules that need the invoices' state, appended to each column's rules.
STATE_RULES: dict[str, tuple[Rule, ...]] = {
    "invoice_number": (
        Rule(
            "INVOICE_NOT_FOUND",
            "no invoice has this number",
            lambda ctx: col("_by_number").is_null(),
        ),
        *_invoice_state_rules(pl.lit(True)),
    ),
    "merchant_reference": (
        Rule(
            "INVOICE_NOT_FOUND",
            "no invoice has this merchant reference",
            lambda ctx: col("_by_reference").is_null(),
        ),
        Rule(
            "REFERENCE_MISMATCH",
            "invoice_number and merchant_reference name different invoices",
            lambda ctx: (
                col("_by_number").is_not_null() & (col("_by_number") != col("_by_reference"))
            ),
        ),
        *_invoice_state_rules(col("invoice_number").is_null()),
    ),
}


def columns(with_state: bool) -> tuple[Column, ...]:
    """The cancellation columns with their format rules, and the state rules when asked."""
    if not with_state:
        return CANCELLATION_COLUMNS
    return tuple(
        replace(c, rules=c.rules + STATE_RULES.get(c.name, ())) for c in CANCELLATION_COLUMNS
    )


def errors_expr(ctx: Context, with_state: bool) -> pl.Expr:
    """Every column's code joined by ``;`` in column order; empty for a valid row."""
    return joined_errors(columns(with_state), ctx)
