"""Invoice file columns and their rules, as data (SPEC 3.1 and 4), and what an invoice
stores of a row and when a row is the same as an invoice (SPEC 13).

Rules that need state (a reference seen earlier in the file, or already
invoiced with other content) read helper columns the validator adds:
``_seen_in_file`` and ``_exists``.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from rules import values
from rules.columns import Column, Context, Rule, col, errors_expr, not_in, not_matching

#: How an invoice stores its expiry: the instant, in UTC, to the microsecond.
EXPIRY_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
#: The only service command a row may have, so the one every invoice from a file had:
#: invoices do not store it.
SERVICE_COMMAND = "PAYMENT_LINK"


def _sms_asked() -> pl.Expr:
    return values.notification_items(col("notification_type")).list.contains("SMS") & ~(
        values.notification_items(col("notification_type")).list.contains("NONE")
    )


def _account(ctx: Context) -> pl.Expr:
    return col("payment_account").fill_null(pl.lit(ctx.default_account, pl.String))


def _unknown_account(ctx: Context) -> pl.Expr:
    if not ctx.accounts:
        return pl.lit(False)
    return _account(ctx).is_not_null() & ~_account(ctx).is_in(list(ctx.accounts))


def _account_needed(ctx: Context) -> pl.Expr:
    return pl.lit(bool(ctx.accounts) and not ctx.default_account)


def _currency_mismatch(ctx: Context) -> pl.Expr:
    if not ctx.accounts:
        return pl.lit(False)
    expected = _account(ctx).replace_strict(dict(ctx.accounts), default=None)
    return expected.is_not_null() & (col("currency").str.to_uppercase() != expected)


INVOICE_COLUMNS: tuple[Column, ...] = (
    Column(
        "service_command",
        required=True,
        rules=(
            Rule(
                "SERVICE_COMMAND_NOT_ALLOWED",
                "service_command must be PAYMENT_LINK",
                lambda ctx: col("service_command") != SERVICE_COMMAND,
            ),
        ),
        example="PAYMENT_LINK",
    ),
    Column(
        "merchant_reference",
        required=True,
        max_length=40,
        rules=(
            Rule(
                "INVALID_FORMAT",
                "letters, digits, - _ . only, starting with a letter or digit",
                not_matching("merchant_reference", r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
            ),
            Rule(
                "DUPLICATE_MERCHANT_REFERENCE",
                "the reference appears earlier in this file",
                lambda ctx: col("_seen_in_file"),
            ),
            Rule(
                "MERCHANT_REFERENCE_EXISTS",
                "an invoice with this reference and other content already exists",
                lambda ctx: col("_exists"),
            ),
        ),
        example="INV-2026-0001",
    ),
    Column(
        "amount",
        required=True,
        rules=(
            Rule(
                "INVALID_AMOUNT",
                "a positive whole number of minor units, at most 10 digits",
                lambda ctx: values.amount(col("amount")).is_null(),
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
            Rule(
                "CURRENCY_ACCOUNT_MISMATCH",
                "the currency is not the payment account's",
                _currency_mismatch,
            ),
        ),
        example="USD",
    ),
    Column(
        "language",
        required=True,
        rules=(
            Rule(
                "INVALID_VALUE",
                "en, ar, fr or rw",
                not_in("language", values.LANGUAGES, any_case=True),
            ),
        ),
        example="en",
    ),
    Column(
        "customer_email",
        required=True,
        max_length=254,
        rules=(
            Rule(
                "INVALID_EMAIL",
                "a valid email address",
                lambda ctx: ~col("_email_ok"),
            ),
        ),
        example="customer@example.com",
    ),
    Column(
        "request_expiry_date",
        required=True,
        rules=(
            Rule(
                "INVALID_DATE",
                "an RFC 3339 date-time with offset, e.g. 2026-12-31T23:59:00+02:00",
                lambda ctx: values.instant(col("request_expiry_date")).is_null(),
            ),
            Rule(
                "EXPIRY_IN_PAST",
                "the expiry must be in the future",
                lambda ctx: values.instant(col("request_expiry_date")) <= pl.lit(ctx.now),
            ),
        ),
        example="2027-12-31T23:59:00+00:00",
    ),
    Column(
        "notification_type",
        required=True,
        rules=(
            Rule(
                "INVALID_VALUE",
                "EMAIL, SMS, NONE or a comma list of them",
                lambda ctx: (
                    values.notification_items(col("notification_type"))
                    .list.eval(~pl.element().is_in(list(values.NOTIFICATIONS)))
                    .list.any()
                ),
            ),
        ),
        example="EMAIL",
    ),
    Column("customer_name", required=False, max_length=40, example="Ada Lovelace"),
    Column(
        "customer_phone",
        required=False,
        max_length=19,
        rules=(
            Rule(
                "INVALID_FORMAT",
                "digits with an optional leading +",
                not_matching("customer_phone", r"^\+?[0-9]+$"),
            ),
        ),
        example="+250788000000",
        required_when=("PHONE_REQUIRED_FOR_SMS", lambda ctx: _sms_asked()),
    ),
    Column("order_description", required=False, max_length=150, example="March subscription"),
    Column(
        "payment_account",
        required=False,
        max_length=64,
        rules=(
            Rule(
                "UNKNOWN_PAYMENT_ACCOUNT",
                "not a configured payment account",
                _unknown_account,
            ),
        ),
        example="",
        # Blank means default_account when one is configured, else REQUIRED (if accounts are).
        required_when=("REQUIRED", _account_needed),
    ),
    Column(
        "link_command",
        required=False,
        rules=(
            Rule(
                "INVALID_VALUE",
                "AUTHORIZATION or PURCHASE",
                not_in("link_command", ("AUTHORIZATION", "PURCHASE")),
            ),
        ),
        example="PURCHASE",
    ),
    Column(
        "return_url",
        required=False,
        max_length=400,
        rules=(
            Rule(
                "INVALID_FORMAT",
                "an http or https URL",
                not_matching("return_url", r"^(?i)https?://[^\s/?#]+[^\s]*$"),
            ),
        ),
        example="https://shop.example.com/thanks",
    ),
)


COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in INVOICE_COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in INVOICE_COLUMNS if c.required)


def invoice_errors(ctx: Context) -> pl.Expr:
    """Every invoice column's code joined by ``;`` in column order; empty for a valid row."""
    return errors_expr(INVOICE_COLUMNS, ctx)


def normalised(ctx: Context) -> dict[str, pl.Expr]:
    """Each field an invoice stores of a row (its name there -> its value from the row's
    trimmed columns), normalised as the rules read it: codes in one case, the expiry as
    its instant, a blank account as the default one."""
    return {
        "merchant_reference": col("merchant_reference"),
        "amount": values.amount(col("amount")),
        "currency": col("currency").str.to_uppercase(),
        "language": col("language").str.to_lowercase(),
        "customer_email": col("customer_email"),
        "customer_name": col("customer_name"),
        "customer_phone": col("customer_phone"),
        "notification_type": values.notification_type(col("notification_type")),
        "expires_at": values.instant(col("request_expiry_date")).dt.strftime(EXPIRY_FORMAT),
        "order_description": col("order_description"),
        "payment_account": _account(ctx),
        "link_command": col("link_command"),
        "return_url": col("return_url"),
    }


#: SPEC 13, "the same content": the stored fields (of :func:`normalised`) that must be
#: equal, blank equal to blank. With the reference they are every column of SPEC 3.1
#: but ``service_command``, which must be :data:`SERVICE_COMMAND`.
SAME_CONTENT: tuple[str, ...] = (
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
)


def same_content(row: Callable[[str], pl.Expr], stored: Callable[[str], pl.Expr]) -> pl.Expr:
    """True where a row's normalised fields (``row(name)``) equal an invoice's
    (``stored(name)``), for each of :data:`SAME_CONTENT`. Blank equals blank, so it says
    nothing where there is no invoice: the caller asks only where there is."""
    return pl.all_horizontal(row(name).eq_missing(stored(name)) for name in SAME_CONTENT)


def same_as_stored(ctx: Context, stored: Callable[[str], pl.Expr]) -> pl.Expr:
    """:func:`same_content` for a row as read (trimmed, not yet normalised)."""
    fields = normalised(ctx)
    return (col("service_command") == SERVICE_COMMAND).fill_null(False) & same_content(
        fields.__getitem__, stored
    )
