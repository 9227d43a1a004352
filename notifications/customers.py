"""The customer's invoice email: one template, the words of each language kept as data.

``locales/<language>.toml`` holds every sentence of the email in one language,
with ``{placeholders}``; they are filled here, before rendering, so the
template holds no logic and escaping happens in one place, the template.
Amounts and dates are formatted with babel for the invoice's language.
"""

from __future__ import annotations

import sqlite3
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from importlib import resources
from string import Formatter
from typing import Any
from urllib.parse import urlsplit

from notifications.formats import money, when
from notifications.message import build
from notifications.mime import Frame, Wire, encode_text
from notifications.render import Pieces, hole, render

LANGUAGES = ("en", "fr", "rw", "ar")
FALLBACK_LANGUAGE = "en"
#: Unicode isolates (FSI ... PDI) around values inside right-to-left sentences:
#: a Latin name, a link or a number keeps its own direction, and bidi controls
#: in a customer's name cannot reorder the sentence around it.
_ISOLATE = "\u2068{}\u2069"


@dataclass(frozen=True)
class Merchant:
    """Who invoices the customer: the sender's address and the name shown."""

    name: str
    sender: str


@dataclass(frozen=True)
class Invoice:
    """What the email says, as stored in ``invoices``."""

    number: int
    email: str
    name: str | None
    language: str | None
    amount: int
    currency: str
    expires_at: str
    description: str | None
    link: str

    @classmethod
    def from_row(cls, row: sqlite3.Row | Mapping[str, Any]) -> Invoice:
        return cls(
            number=int(row["invoice_number"]),
            email=str(row["customer_email"]),
            name=row["customer_name"],
            language=row["language"],
            amount=int(row["amount"]),
            currency=str(row["currency"]),
            expires_at=str(row["expires_at"]),
            description=row["order_description"],
            link=str(row["payment_link_url"]),
        )


@cache
def words(language: str) -> dict[str, str]:
    """The sentences of one language (``locales/<language>.toml``)."""
    source = resources.files("notifications").joinpath("locales", f"{language}.toml")
    return dict(tomllib.loads(source.read_text("utf-8")))


def language_of(invoice: Invoice) -> str:
    language = (invoice.language or "").strip().lower()
    return language if language in LANGUAGES else FALLBACK_LANGUAGE


def message_id(invoice: Invoice) -> str:
    """The same for every attempt at one invoice's email: a repeat is recognisably one."""
    return f"invoice-{invoice.number}"


def safe_link(url: str) -> str | None:
    """Only http(s) links become buttons; anything else (``javascript:``) is shown as text."""
    if url.startswith(("https://", "http://")):
        # Every link the worker makes: urlsplit, which says the same, took 17 us an email.
        return url
    return url if urlsplit(url).scheme in ("http", "https") else None


def texts(invoice: Invoice, merchant: Merchant) -> dict[str, str]:
    """Every sentence of the email in the invoice's language, placeholders filled."""
    language = language_of(invoice)
    table = words(language)
    rtl = table["direction"] == "rtl"
    values = {
        "name": (invoice.name or "").strip(),
        "merchant": merchant.name,
        "amount": money(invoice.amount, invoice.currency, language),
        "expiry": when(invoice.expires_at, language),
        "number": str(invoice.number),
        "email": invoice.email,
    }
    if rtl:
        values = {key: _ISOLATE.format(value) for key, value in values.items()}
    filled = {key: text.format_map(values) for key, text in table.items()}
    filled["greeting"] = filled["greeting"] if invoice.name else filled["greeting_no_name"]
    filled.update({f"{key}_value": value for key, value in values.items()})
    return filled


@dataclass(frozen=True)
class Content:
    """What one invoice email says: the parts that change from email to email."""

    recipient: str
    recipient_name: str
    subject: str
    text: str
    html: str
    message_id: str


def content(merchant: Merchant, invoice: Invoice) -> Content:
    """The invoice email's subject and bodies, in the invoice's language."""
    t = texts(invoice, merchant)
    text, html = _render(language_of(invoice), t, (invoice.description or "").strip(), invoice.link)
    return Content(
        recipient=invoice.email,
        recipient_name=invoice.name or "",
        subject=_subject(t),
        text=text,
        html=html,
        message_id=message_id(invoice),
    )


def _subject(t: dict[str, str]) -> str:
    # Some mail clients draw isolates in a subject line as boxes; the body keeps them.
    return t["subject"].replace("\u2068", "").replace("\u2069", "")


def _jinja(language: str, t: dict[str, Any], description: str, link: str) -> tuple[str, str]:
    return render(
        "invoice",
        title=t["subject"],
        lang=language,
        dir=t["direction"],
        align="right" if t["direction"] == "rtl" else "left",
        preheader=t["preheader"],
        t=t,
        description=description,
        link=link,
        button_link=safe_link(link),
    )


#: (language, direction, sentence keys, has a description, has a button, merchant) ->
#: the templates as :class:`Pieces`, or None where filling them did not give Jinja's text.
_pieces: dict[tuple[str, str, tuple[str, ...], bool, bool, str], Pieces | None] = {}
#: The placeholders that change from invoice to invoice.
_PER_INVOICE = ("name", "amount", "expiry", "number", "email")


@cache
def _varying(language: str) -> tuple[str, ...]:
    """The sentences of ``language`` that change from invoice to invoice: the rest are
    the same in every email of a merchant, and written into its :class:`Pieces`."""
    table = words(language)
    keys = [
        key
        for key, text in table.items()
        if key == "greeting"  # the greeting with a name, or the one without
        or any(field in _PER_INVOICE for _, field, _, _ in Formatter().parse(text))
    ]
    return (*keys, *(f"{name}_value" for name in _PER_INVOICE))


def _render(language: str, t: dict[str, str], description: str, link: str) -> tuple[str, str]:
    """Jinja's (text, html) for the invoice, by filling :class:`Pieces` made once for each
    language and shape; the first of each shape is checked against Jinja itself."""
    key, values = _shape(language, t, description, link)
    pieces = _pieces.get(key, _UNMADE)
    if pieces is None:
        return _jinja(language, t, description, link)
    if pieces is _UNMADE:
        made = _make_pieces(key, t)
        expected = _jinja(language, t, description, link)
        _pieces[key] = made if made.fill(values) == expected else None
        return expected
    assert isinstance(pieces, Pieces)
    return pieces.fill(values)


_UNMADE = Pieces.__new__(Pieces)


def _shape(
    language: str, t: dict[str, str], description: str, link: str
) -> tuple[tuple[str, str, tuple[str, ...], bool, bool, str], list[str]]:
    """The key of the email's :class:`Pieces`, and the values that fill them."""
    button = safe_link(link) is not None
    key = (language, t["direction"], tuple(t), bool(description), button, t["merchant_value"])
    return key, [*[t[k] for k in _varying(language)], description, link, link]


def _bodies(
    language: str, t: dict[str, str], description: str, link: str
) -> tuple[tuple[str, str], tuple[str, str]]:
    """The (text, html) bodies encoded for the wire: by the :class:`Pieces` of the shape
    once made, whose template lines are encoded once; else from the rendered text."""
    key, values = _shape(language, t, description, link)
    pieces = _pieces.get(key)
    if pieces is not None and pieces is not _UNMADE:
        return pieces.encode(values)
    text, html = _render(language, t, description, link)
    return encode_text(text, exact=False), encode_text(html, exact=False)


def _make_pieces(
    key: tuple[str, str, tuple[str, ...], bool, bool, str], t: dict[str, str]
) -> Pieces:
    """The Pieces of ``key``'s shape: holes for what changes from invoice to invoice, the
    sentences that do not (``t``'s) written in."""
    language, direction, _, described, button, _ = key
    varying = _varying(language)
    holes = {**t, **{k: hole(i) for i, k in enumerate(varying)}}
    n = len(varying)
    return Pieces(
        "invoice",
        title=holes["subject"],
        lang=language,
        dir=direction,
        align="right" if direction == "rtl" else "left",
        preheader=holes["preheader"],
        t=holes,
        description=hole(n) if described else "",
        link=hole(n + 1),
        button_link=hole(n + 2) if button else None,
    )


def invoice_email(merchant: Merchant, invoice: Invoice) -> EmailMessage:
    """The invoice email, in the invoice's language; raises ValueError for a bad address."""
    return _message(merchant, content(merchant, invoice))


def _message(merchant: Merchant, c: Content) -> EmailMessage:
    return build(
        sender=merchant.sender,
        sender_name=merchant.name,
        recipients=[c.recipient],
        recipient_name=c.recipient_name,
        subject=c.subject,
        text=c.text,
        html=c.html,
        message_id=c.message_id,
    )


@cache
def frame(merchant: Merchant) -> Frame:
    return Frame(merchant.sender, merchant.name)


def invoice_wire(merchant: Merchant, invoice: Invoice) -> Wire | EmailMessage:
    """The invoice email as :func:`invoice_email` writes it, built for throughput: the
    MIME frame made once per merchant, the template's lines encoded once
    (``notifications.mime``, ``notifications.bodies``). An address ``mime`` leaves to
    ``email`` gets :func:`invoice_email`'s message."""
    t = texts(invoice, merchant)
    text, html = _bodies(language_of(invoice), t, (invoice.description or "").strip(), invoice.link)
    wire = frame(merchant).build(
        recipient=invoice.email,
        recipient_name=invoice.name or "",
        subject=_subject(t),
        text=text,
        html=html,
        message_id=message_id(invoice),
        date=now_header(),
    )
    return wire if wire is not None else invoice_email(merchant, invoice)


_date: tuple[int, str] = (0, "")


def now_header() -> str:
    """The Date header's value for now, as ``build`` writes it; made once a second."""
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, format_datetime(datetime.fromtimestamp(second).astimezone()))
    return _date[1]
