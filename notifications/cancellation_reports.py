"""The administrators' report after a cancellation file.

Like ``notifications.batch_reports``: callers pass plain data, amounts in minor
units; nothing here reads files or the database.
"""

from __future__ import annotations

from typing import Any

from notifications.formats import count
from notifications.message import Attachment, header_text
from notifications.prepared import Prepared, prepare
from notifications.render import render
from notifications.reports import Envelope, totals


def _subject(file: dict[str, Any], outcome: str) -> str:
    return f"[invoice-worker] {header_text(str(file['name']), 120)}: {outcome}"


def _attachments(file: dict[str, Any], errors_csv: bytes | None) -> list[Attachment]:
    if not errors_csv:
        return []
    return [Attachment(filename=f"{file['name']}.errors.csv", content=errors_csv)]


def cancellations(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    cancelled: int,
    rejected: int,
    batches_cancelled: int,
    invoices_released: int,
    first_errors: list[tuple[int, str, str]],
    currency_totals: list[tuple[str, int, int]],
    result_name: str,
    errors_csv: bytes | None = None,
) -> Prepared:
    """After a cancellation file: invoices cancelled (totals per currency), batches
    cancelled and the invoices they released, and the rows rejected
    (line, invoice number or merchant reference, codes)."""
    outcome = f"{cancelled} invoices cancelled"
    if rejected:
        outcome += f", {rejected} rejected"
    more = max(rejected - len(first_errors), 0)
    text, html = render(
        "cancellations",
        title=f"Cancellations: {file['name']}",
        file=file,
        cancelled=cancelled,
        rejected=rejected,
        batches_cancelled=batches_cancelled,
        invoices_released=invoices_released,
        first_errors=[
            (line, named, codes.replace(";", "; ")) for line, named, codes in first_errors
        ],
        more_errors=f"{count(more)} more in the attached CSV." if more else "",
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
