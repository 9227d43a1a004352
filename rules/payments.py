"""Payment file columns and their rules, as data (SPEC 3.3 and 5).

Like the invoice columns (``rules.columns``): each column lists its checks in
reporting order and a row gets at most one code per column, the first that
applies. Format rules read the row alone; state rules (rules 7 and 8 and the
other payment codes) read helper columns the processing step joins in from the
invoice the row names:

``_found``, ``_type``, ``_status`` (``NEW``, ``PAID`` or ``CANCELLED``),
``_amount`` (due, minor units), ``_currency``, ``_expires_at`` (UTC datetime), ``_batch_number``,
``_reference_exists`` (the payment reference is already recorded),
``_seen_in_file`` (it appears earlier in the file) and ``_paid_earlier`` (an
earlier row of the file paid the same invoice).
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from rules import values
from rules.columns import Column, Context, Rule, column_error

REFERENCE_MAX = 64
INVOICE_NUMBER_MAX = 18  # fits SQLite's 64-bit integer


def col(name: str) -> pl.Expr:
    return pl.col(name)


def paid_at(ctx: Context) -> pl.Expr:
    """When the payment happened: the row's ``paid_at``, else now (a UTC datetime)."""
    return values.instant(col("paid_at")).fill_null(pl.lit(ctx.now, pl.Datetime("us", "UTC")))


def _same_currency() -> pl.Expr:
    return col("currency").str.to_uppercase() == col("_currency")


def _amount() -> pl.Expr:
    return values.amount(col("amount"))


PAYMENT_COLUMNS: tuple[Column, ...] = (
    Column(
        "payment_reference",
        required=True,
        max_length=REFERENCE_MAX,
        rules=(
            Rule(
                "INVALID_FORMAT",
                "printable ASCII without spaces",
                lambda ctx: ~col("payment_reference").str.contains(r"^[!-~]+$"),
            ),
        ),
        example="PAY-2026-0001",
    ),
    Column(
        "invoice_number",
        required=True,
        max_length=INVOICE_NUMBER_MAX,
        rules=(
            Rule(
                "INVALID_FORMAT",
                "an invoice number: digits only",
                lambda ctx: ~col("invoice_number").str.contains(r"^[0-9]+$"),
            ),
        ),
        example="100000000001",
    ),
    Column(
        "amount",
        required=True,
        rules=(
            Rule(
                "INVALID_AMOUNT",
                "a positive whole number of minor units, at most 10 digits",
                lambda ctx: _amount().is_null(),
            ),
        ),
        example="10000",
    ),
    Column(
        "currency",
        required=True,
        rules=(
            Rule(
                "INVALID_CURRENCY",
                "an ISO 4217 code allowed by configuration",
                lambda ctx: ~col("currency").str.to_uppercase().is_in(sorted(ctx.currencies)),
            ),
        ),
        example="USD",
    ),
    Column(
        "paid_at",
        required=False,
        rules=(
            Rule(
                "INVALID_DATE",
                "an RFC 3339 date-time with offset, e.g. 2026-03-01T10:00:00+02:00",
                lambda ctx: values.instant(col("paid_at")).is_null(),
            ),
        ),
        example="2026-03-01T10:00:00+00:00",
    ),
)

#: Rules that need the invoice's state, appended to each column's format rules.
STATE_RULES: dict[str, tuple[Rule, ...]] = {
    "payment_reference": (
        Rule(
            "DUPLICATE_PAYMENT_REFERENCE",
            "this payment reference was already used (earlier in this file or before)",
            lambda ctx: col("_seen_in_file") | col("_reference_exists"),
        ),
    ),
    "invoice_number": (
        Rule("INVOICE_NOT_FOUND", "no invoice has this number", lambda ctx: ~col("_found")),
        Rule(
            "INVOICE_CANCELLED",
            "the invoice was cancelled: it cannot be paid",
            lambda ctx: col("_status") == "CANCELLED",
        ),
        Rule(
            "INVOICE_IN_BATCH",
            "the invoice is in a batch: pay the batch invoice instead (rule 7)",
            lambda ctx: col("_batch_number").is_not_null(),
        ),
        Rule(
            "ALREADY_PAID",
            "the invoice is already paid",
            lambda ctx: (col("_status") == "PAID") | col("_paid_earlier"),
        ),
        Rule(
            "INVOICE_EXPIRED",
            "the invoice expired before the payment",
            lambda ctx: col("_expires_at") <= paid_at(ctx),
        ),
    ),
    "amount": (
        Rule(
            "PARTIAL_PAYMENT_NOT_ALLOWED",
            "less than the amount due: an invoice is paid in full (rule 8)",
            lambda ctx: col("_found") & _same_currency() & (_amount() < col("_amount")),
        ),
        Rule(
            "AMOUNT_MISMATCH",
            "more than the amount due",
            lambda ctx: col("_found") & _same_currency() & (_amount() > col("_amount")),
        ),
    ),
    "currency": (
        Rule(
            "CURRENCY_MISMATCH",
            "not the invoice's currency",
            lambda ctx: col("_found") & ~_same_currency(),
        ),
    ),
}

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in PAYMENT_COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in PAYMENT_COLUMNS if c.required)


def columns(with_state: bool) -> tuple[Column, ...]:
    """The payment columns with their format rules, and the state rules when asked."""
    if not with_state:
        return PAYMENT_COLUMNS
    return tuple(replace(c, rules=c.rules + STATE_RULES.get(c.name, ())) for c in PAYMENT_COLUMNS)


def errors_expr(ctx: Context, with_state: bool) -> pl.Expr:
    """Every column's code joined by ``;`` in column order; empty for a valid row."""
    return pl.concat_str(
        [column_error(c, ctx) for c in columns(with_state)], separator=";", ignore_nulls=True
    ).fill_null("")
