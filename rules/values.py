"""How text values are read: amounts, instants, notification lists, emails, currencies.

Shared by the invoice and payment rules; every function here is vectorised.
"""

from __future__ import annotations

from functools import cache

import polars as pl
from babel.numbers import get_currency_precision, list_currencies
from email_validator import EmailNotValidError, validate_email

LANGUAGES = ("en", "ar", "fr", "rw")
NOTIFICATIONS = ("EMAIL", "SMS", "NONE")
INSTANT_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z")

# The common ASCII shape of an address: dot-atom local part, dotted domain with
# an alphabetic TLD. Everything it accepts email-validator accepts too; what it
# does not accept is decided by email-validator, once per distinct value.
_PLAIN_EMAIL = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def amount(text: pl.Expr) -> pl.Expr:
    """A positive integer of at most 10 ASCII digits, else null (``1.00``, ``1e3``, ``-0``)."""
    ok = text.str.contains(r"^[0-9]{1,10}$")
    number = pl.when(ok).then(text.cast(pl.Int64, strict=False))
    return pl.when(number > 0).then(number)


def instant(text: pl.Expr) -> pl.Expr:
    """An RFC 3339 / ISO 8601 date-time with offset, as a UTC datetime; else null."""
    normal = text.str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]", "${1}T").str.replace(r"[zZ]$", "+00:00")
    parsed = [
        normal.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False) for fmt in INSTANT_FORMATS
    ]
    return pl.coalesce(parsed)


def notification_items(text: pl.Expr) -> pl.Expr:
    """``"email, sms"`` as ``["EMAIL", "SMS"]``."""
    return text.str.to_uppercase().str.split(",").list.eval(pl.element().str.strip_chars())


def notification_type(text: pl.Expr) -> pl.Expr:
    """The canonical list: ``NONE`` alone when NONE is among others, else sorted, unique."""
    items = notification_items(text)
    return (
        pl.when(items.list.contains("NONE"))
        .then(pl.lit("NONE"))
        .otherwise(items.list.unique().list.sort().list.join(","))
    )


@cache
def currencies() -> frozenset[str]:
    """ISO 4217 alphabetic codes known to CLDR (babel)."""
    return frozenset(code for code in list_currencies() if len(code) == 3 and code.isalpha())


def exponent(currency: str) -> int:
    """Minor-unit digits of a currency (USD 2, JOD 3, RWF 0), from CLDR."""
    return int(get_currency_precision(currency))


def _valid_email(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def email_ok(addresses: pl.Series) -> pl.Series:
    """True where an address is valid; null addresses are False (REQUIRED reports them)."""
    plain = addresses.str.contains(_PLAIN_EMAIL).fill_null(False)
    undecided = addresses.filter(~plain & addresses.is_not_null()).unique()
    if undecided.is_empty():
        return plain
    # email-validator is per value: run it on the few distinct values the regex left.
    verdicts = {a: _valid_email(a) for a in undecided.to_list()}
    slow = addresses.replace_strict(verdicts, default=False, return_dtype=pl.Boolean)
    return plain | slow.fill_null(False)
