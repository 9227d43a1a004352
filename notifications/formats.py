"""Amounts and dates as a reader of a given language expects them, with babel (CLDR).

Amounts arrive in minor units (ISO 4217 exponent): 2000 RWF, 1000 USD = 10.00,
100000 JOD = 100.000. Every language the worker speaks has CLDR data in babel
(``rw`` included); an unknown language falls back to English rather than fail
an email.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from datetime import date as date_type
from decimal import Decimal
from functools import cache, lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import format_currency, format_decimal, get_currency_precision

FALLBACK_LOCALE = "en"
#: CLDR's currencySpacing rule, which babel does not apply: a currency code
#: written in letters next to a digit gets a no-break space ("RWF 2,000", not
#: "RWF2,000"); a symbol such as "$" stays attached ("$10.00").
_LETTER_THEN_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)")
_DIGIT_THEN_LETTER = re.compile(r"(?<=\d)(?=[^\W\d_])")
NBSP = "\u00a0"
#: CLDR date-time pattern letters for seconds, fractions and time zones.
_FINE_OR_ZONED = re.compile(r"[sSAzZOvVxX]")


@cache
def locale(language: str | None) -> Locale:
    try:
        return Locale.parse((language or FALLBACK_LOCALE).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(FALLBACK_LOCALE)


@cache
def exponent(currency: str) -> int:
    try:
        return int(get_currency_precision(currency))
    except (KeyError, ValueError):
        return 2


def money(minor_units: int, currency: str, language: str | None = "en") -> str:
    """``2000 RWF`` -> ``RWF 2,000``; ``1000 USD`` -> ``$10.00``; ``fr``: ``10,00 $US``.

    Amounts of one currency, language and number of digits are written alike but for
    the digits, so babel's text for one of them is a template for all: its digits are
    slots the amount's digits fill (babel took 15 µs an amount; this, 1). The first
    amount of each shape is checked against babel itself."""
    units = int(minor_units)
    if units < 0:
        return _babel_money(units, currency, language)
    digits = str(units).rjust(exponent(currency) + 1, "0")
    key = (currency, language, len(digits))
    template = _money_templates.get(key, "")
    if template is None:
        return _babel_money(units, currency, language)
    if template == "":
        expected = _babel_money(units, currency, language)
        made = _money_template(currency, language, len(digits))
        _money_templates[key] = made if made and made.format(*digits) == expected else None
        return expected
    return template.format(*digits)


_money_templates: dict[tuple[str, str | None, int], str | None] = {}


def _money_template(currency: str, language: str | None, count: int) -> str | None:
    """babel's text for ``count``-digit amounts as a ``str.format`` template with a field
    for each digit; None where two probes do not differ in exactly the digits."""
    ones = _babel_money(int("1" * count), currency, language)
    twos = _babel_money(int("2" * count), currency, language)
    if len(ones) != len(twos):
        return None
    slots = [i for i, (a, b) in enumerate(zip(ones, twos, strict=True)) if a != b]
    if len(slots) != count or any(ones[i] != "1" or twos[i] != "2" for i in slots):
        return None
    pieces = [c.replace("{", "{{").replace("}", "}}") for c in ones]
    for i in slots:
        pieces[i] = "{}"
    return "".join(pieces)


def _babel_money(units: int, currency: str, language: str | None) -> str:
    value = Decimal(units).scaleb(-exponent(currency))
    text = format_currency(value, currency, locale=locale(language), currency_digits=True)
    text = _LETTER_THEN_DIGIT.sub(NBSP, text)
    return _DIGIT_THEN_LETTER.sub(NBSP, text)


def parse_instant(iso: str) -> datetime:
    """An ISO 8601 instant as stored (``...Z``) as an aware UTC datetime."""
    moment = datetime.fromisoformat(iso)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def when(iso: str, language: str | None = "en") -> str:
    """A date and time in the reader's language, in UTC and saying so.

    The file's offset is not kept, and a customer's time zone is not known:
    an explicit "UTC" is the one reading that cannot mislead.
    """
    moment = parse_instant(iso)
    # Each part is made once: the date's words from the date alone, the time's from its
    # hour and minute (a short time has no seconds), so instants that all differ still
    # share them. babel took a quarter of a customer email's time for these.
    date = _date(moment.year, moment.month, moment.day, language)
    if _short_time_has_minutes_at_most(language):
        time = _time(moment.hour, moment.minute, language)
    else:
        time = format_time(moment, "short", tzinfo=UTC, locale=locale(language))
    return _glue(language).format(f"{time} UTC", date)


@lru_cache(maxsize=4096)
def _date(year: int, month: int, day: int, language: str | None) -> str:
    return str(format_date(date_type(year, month, day), "long", locale=locale(language)))


@lru_cache(maxsize=8192)
def _time(hour: int, minute: int, language: str | None) -> str:
    moment = datetime(2000, 1, 1, hour, minute, tzinfo=UTC)
    return str(format_time(moment, "short", tzinfo=UTC, locale=locale(language)))


@cache
def _short_time_has_minutes_at_most(language: str | None) -> bool:
    """Whether the locale's short time shows nothing finer than minutes, nor a zone."""
    pattern = str(locale(language).time_formats["short"].pattern)
    return not _FINE_OR_ZONED.search(re.sub(r"'[^']*'", "", pattern))


@cache
def _glue(language: str | None) -> str:
    """The locale's own glue between date and time ("{1}, {0}"), quotes dropped."""
    return str(locale(language).datetime_formats["long"]).replace("'", "")


def count(number: int, language: str | None = "en") -> str:
    """An integer with the locale's grouping: 100000 -> 100,000 (en), 100 000 (fr)."""
    return _count(int(number), language)


@lru_cache(maxsize=4096)
def _count(number: int, language: str | None) -> str:
    # A report writes ten counts, most of them small and the same from file to file.
    return format_decimal(number, locale=locale(language))
