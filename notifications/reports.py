"""Administrator reports: what happened to a file, counts first, errors attached.

Callers pass plain data (dicts, lists); nothing here reads files or the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

from babel.numbers import format_currency, get_currency_precision

from notifications.message import Attachment, build, header_text
from notifications.render import render

#: Unknown columns named in an email, at most (a file may have thousands).
MAX_LISTED = 20


@dataclass(frozen=True)
class Envelope:
    """Who reports come from and go to."""

    sender: str
    admins: Sequence[str]


def money(minor_units: int, currency: str, locale: str = "en") -> str:
    """``2000 RWF`` -> ``RWF 2,000``; ``1000 USD`` -> ``$10.00``: minor units by ISO 4217."""
    try:
        digits = int(get_currency_precision(currency))
    except (KeyError, ValueError):
        digits = 2
    value = Decimal(int(minor_units)).scaleb(-digits)
    return format_currency(value, currency, locale=locale, currency_digits=True)


def totals(rows: Iterable[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """(currency, count, sum of minor units) rows, formatted for a table."""
    return [
        {"currency": cur, "count": count, "formatted": money(total, cur)}
        for cur, count, total in sorted(rows)
    ]


def _subject(file: dict[str, Any], outcome: str) -> str:
    return f"[invoice-worker] {header_text(str(file['name']), 120)}: {outcome}"


def _attachment(name: str, errors_csv: bytes | None) -> list[Attachment]:
    if not errors_csv:
        return []
    return [Attachment(filename=f"{name}.errors.csv", content=errors_csv)]


def validation(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    rows: int,
    valid: int,
    rejected: int,
    first_errors: list[tuple[int, str, str]],
    unknown_columns: list[str],
    next_step: str,
    errors_csv: bytes | None,
) -> EmailMessage:
    outcome = f"validated, {valid} of {rows} rows valid"
    if rejected:
        outcome += f", {rejected} rejected"
    text, html = render(
        "validated",
        title=f"Validated: {file['name']}",
        file=file,
        rows=rows,
        valid=valid,
        rejected=rejected,
        first_errors=first_errors,
        more_errors=max(rejected - len(first_errors), 0),
        unknown_columns=unknown_columns[:MAX_LISTED]
        + (
            [f"and {len(unknown_columns) - MAX_LISTED} more"]
            if len(unknown_columns) > MAX_LISTED
            else []
        ),
        next_step=next_step,
    )
    return build(
        sender=envelope.sender,
        recipients=envelope.admins,
        subject=_subject(file, outcome),
        text=text,
        html=html,
        attachments=_attachment(str(file["name"]), errors_csv),
    )


def processing(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    created: int,
    rejected: int,
    currency_totals: list[tuple[str, int, int]],
    result_name: str,
) -> EmailMessage:
    text, html = render(
        "processed",
        title=f"Processed: {file['name']}",
        file=file,
        created=created,
        rejected=rejected,
        totals=totals(currency_totals),
        result_name=result_name,
    )
    return build(
        sender=envelope.sender,
        recipients=envelope.admins,
        subject=_subject(file, f"processed, {created} invoices created"),
        text=text,
        html=html,
    )


def stalled(envelope: Envelope, file: dict[str, Any], *, state: str, error: str) -> EmailMessage:
    """Sent once per file when it cannot move on for a reason outside the file (disk, folder)."""
    text, html = render(
        "stalled", title=f"Waiting: {file['name']}", file=file, state=state, error=error
    )
    return build(
        sender=envelope.sender,
        recipients=envelope.admins,
        subject=_subject(file, f"waiting ({state}): {error}"),
        text=text,
        html=html,
    )


def rejection(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    code: str,
    message: str,
    line: int | None,
    result_name: str,
    first_errors: list[tuple[int, str, str]] = (),  # type: ignore[assignment]
    rejected: int = 0,
    errors_csv: bytes | None = None,
) -> EmailMessage:
    text, html = render(
        "rejected",
        title=f"Rejected: {file['name']}",
        file=file,
        code=code,
        message=message,
        line=line,
        result_name=result_name,
        first_errors=list(first_errors),
        more_errors=max(rejected - len(first_errors), 0),
    )
    return build(
        sender=envelope.sender,
        recipients=envelope.admins,
        subject=_subject(file, f"rejected ({code})"),
        text=text,
        html=html,
        attachments=_attachment(str(file["name"]), errors_csv),
    )
