"""Administrator reports for batch request files and payment files.

Like ``notifications.reports``: callers pass plain data, amounts in minor
units; nothing here reads files or the database.
"""

from __future__ import annotations

from typing import Any

from notifications.message import Attachment, header_text
from notifications.prepared import Prepared, prepare
from notifications.render import render
from notifications.reports import Envelope, money, totals


def _subject(file: dict[str, Any], outcome: str) -> str:
    return f"[invoice-worker] {header_text(str(file['name']), 120)}: {outcome}"


def _attachments(file: dict[str, Any], errors_csv: bytes | None) -> list[Attachment]:
    if not errors_csv:
        return []
    return [Attachment(filename=f"{file['name']}.errors.csv", content=errors_csv)]


def batches(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    created: int,
    rejected: int,
    first_created: list[tuple[str, str, int, int, str]],
    first_rejected: list[tuple[str, int, str]],
    currency_totals: list[tuple[str, int, int]],
    result_name: str,
    errors_csv: bytes | None = None,
) -> Prepared:
    """After a batch request file: batches created (transaction, number, invoices, amount)
    and requests rejected (transaction, HTTP status, codes)."""
    outcome = f"{created} batch invoices created"
    if rejected:
        outcome += f", {rejected} requests rejected"
    text, html = render(
        "batches",
        title=f"Batch requests: {file['name']}",
        file=file,
        created=created,
        rejected=rejected,
        first_created=[
            {
                "transaction_id": tx,
                "invoice_number": number,
                "invoices": count,
                "amount": money(amount, currency),
            }
            for tx, number, count, amount, currency in first_created
        ],
        more_created=max(created - len(first_created), 0),
        first_rejected=first_rejected,
        more_rejected=max(rejected - len(first_rejected), 0),
        totals=totals(currency_totals),
        result_name=result_name,
    )
    return prepare(
        sender=envelope.sender,
        recipients=envelope.admins,
        subject=_subject(file, outcome),
        text=text,
        html=html,
        attachments=_attachments(file, errors_csv),
        automatic=True,
    )


def payments(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    applied: int,
    rejected: int,
    batches_paid: int,
    first_errors: list[tuple[int, str, str]],
    currency_totals: list[tuple[str, int, int]],
    result_name: str,
    errors_csv: bytes | None = None,
) -> Prepared:
    """After a payment file: payments applied (totals per currency) and rows rejected."""
    outcome = f"{applied} payments applied"
    if rejected:
        outcome += f", {rejected} rejected"
    text, html = render(
        "payments",
        title=f"Payments: {file['name']}",
        file=file,
        applied=applied,
        rejected=rejected,
        batches_paid=batches_paid,
        first_errors=first_errors,
        more_errors=max(rejected - len(first_errors), 0),
        totals=totals(currency_totals),
        result_name=result_name,
    )
    return prepare(
        sender=envelope.sender,
        recipients=envelope.admins,
        subject=_subject(file, outcome),
        text=text,
        html=html,
        attachments=_attachments(file, errors_csv),
        automatic=True,
    )
