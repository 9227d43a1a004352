"""The customer's invoice email: one template, the words of each language kept as data.

``locales/<language>.toml`` holds every sentence of the email in one language,
with ``{placeholders}``; they are filled here, before rendering, so the
template holds no logic and escaping happens in one place, the template.
Amounts and dates are formatted with babel for the invoice's language.
"""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from notifications.formats import money, when
from notifications.message import build
from notifications.render import render

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


def invoice_email(merchant: Merchant, invoice: Invoice) -> EmailMessage:
    """The invoice email, in the invoice's language; raises ValueError for a bad address."""
    language = language_of(invoice)
    t = texts(invoice, merchant)
    rtl = t["direction"] == "rtl"
    text, html = render(
        "invoice",
        title=t["subject"],
        lang=language,
        dir=t["direction"],
        align="right" if rtl else "left",
        preheader=t["preheader"],
        t=t,
        description=(invoice.description or "").strip(),
        link=invoice.link,
        button_link=safe_link(invoice.link),
    )
    return build(
        sender=merchant.sender,
        sender_name=merchant.name,
        recipients=[invoice.email],
        recipient_name=invoice.name or "",
        # Some mail clients draw isolates in a subject line as boxes; the body keeps them.
        subject=t["subject"].replace("\u2068", "").replace("\u2069", ""),
        text=text,
        html=html,
        message_id=message_id(invoice),
    )
