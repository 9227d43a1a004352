"""Administrator reports: what happened to a file, counts first, errors attached.

Every report names the file and the outcome in its subject, puts the counts in
its first lines, shows the first errors in a table and attaches every error as
CSV. Callers pass plain data (dicts, lists); nothing here reads files or the
database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from notifications.formats import count, money
from notifications.message import Attachment, header_text
from notifications.prepared import Prepared, prepare
from notifications.render import render

__all__ = [
    "Envelope",
    "bounces",
    "money",
    "processing",
    "rejection",
    "stalled",
    "totals",
    "validation",
]

FIRST_ERRORS = 20
#: Unknown columns named in an email, at most (a file may have thousands).
MAX_LISTED = 20
GOOD, WARN, BAD = "#2f8132", "#b7791f", "#c62828"


@dataclass(frozen=True)
class Envelope:
    """Who reports come from and go to."""

    sender: str
    admins: Sequence[str]


def plural(number: int, word: str, words: str | None = None) -> str:
    return f"{count(number)} {word if number == 1 else (words or word + 's')}"


def totals(rows: Iterable[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """(currency, count, sum of minor units) rows, formatted for a table."""
    return [
        {"currency": cur, "count": count(n), "formatted": money(total, cur)}
        for cur, n, total in sorted(rows)
    ]


def first_rows(errors_csv: bytes | None, limit: int = FIRST_ERRORS) -> list[tuple[str, ...]]:
    """The first data rows of an attachment, for the table of a report that has none."""
    if not errors_csv:
        return []
    reader = csv.reader(io.StringIO(errors_csv.decode("utf-8")))
    next(reader, None)
    return [tuple(row) for _, row in zip(range(limit), reader, strict=False)]


def _readable(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Codes joined by ";" get a space after it, so that a table cell can wrap there."""
    return [(*row[:-1], str(row[-1] or "").replace(";", "; ")) for row in rows]


def _exist(number: int) -> str:
    """What ``number`` rows naming invoices that exist with their content are called."""
    return "already exists" if number == 1 else "already exist"


def _more(total: int, shown: int, attachment: str) -> str:
    rest = max(total - shown, 0)
    return f"{count(rest)} more in the attached {attachment}." if rest and attachment else ""


def _subject(file: dict[str, Any], outcome: str) -> str:
    return f"[invoice-worker] {header_text(str(file['name']), 120)}: {outcome}"


def _attachment_name(file: dict[str, Any], what: str) -> str:
    return f"{file['name']}.{what}.csv"


def _attachments(name: str, content: bytes | None) -> list[Attachment]:
    return [Attachment(filename=name, content=content)] if content else []


def _email(
    envelope: Envelope,
    template: str,
    file: dict[str, Any],
    outcome: str,
    subject: str,
    attachments: list[Attachment],
    **context: Any,
) -> Prepared:
    text, html = render(
        template, title=f"{outcome}: {file['name']}", outcome=outcome, file=file, **context
    )
    return prepare(
        sender=envelope.sender,
        recipients=envelope.admins,
        subject=_subject(file, subject),
        text=text,
        html=html,
        attachments=attachments,
        automatic=True,
    )


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
    existing: int = 0,
) -> Prepared:
    """``existing``: rows naming an invoice with the same content, neither valid (nothing
    is created for them) nor rejected."""
    subject = f"validated, {count(valid)} of {count(rows)} rows valid"
    if existing:
        subject += f", {count(existing)} {_exist(existing)}"
    if rejected:
        subject += f", {count(rejected)} rejected"
    if rejected or existing:
        headline = f"{count(valid)} of {plural(rows, 'row')} valid"
        if existing:
            headline += f"; {count(existing)} {_exist(existing)} (nothing to create)"
        if rejected:
            headline += f"; {count(rejected)} rejected and skipped"
        headline += "."
    else:
        headline = f"All {plural(rows, 'row')} valid."
    attachment = _attachment_name(file, "errors")
    return _email(
        envelope,
        "validated",
        file,
        "Validated",
        subject,
        _attachments(attachment, errors_csv),
        accent=WARN if rejected else GOOD,
        headline=headline,
        rows=rows,
        valid=valid,
        rejected=rejected,
        existing=existing,
        first_errors=_readable(first_errors[:FIRST_ERRORS]),
        more_text=_more(rejected, min(len(first_errors), FIRST_ERRORS), attachment),
        unknown_columns=unknown_columns[:MAX_LISTED]
        + (
            [f"and {len(unknown_columns) - MAX_LISTED} more"]
            if len(unknown_columns) > MAX_LISTED
            else []
        ),
        next_step=next_step,
        attachment=attachment if errors_csv else "",
    )


def processing(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    created: int,
    rejected: int,
    currency_totals: list[tuple[str, int, int]],
    result_name: str,
    emails: int = 0,
    sms: int = 0,
    existing: int = 0,
) -> Prepared:
    """``existing``: rows naming an invoice with the same content: none created for them."""
    subject = f"processed, {plural(created, 'invoice')} created"
    headline = f"{plural(created, 'invoice')} created"
    if existing:
        subject += f", {count(existing)} {_exist(existing)}"
        headline += f"; {count(existing)} {_exist(existing)}"
    if rejected:
        subject += f", {plural(rejected, 'row')} rejected"
        headline += f"; {plural(rejected, 'row')} rejected"
    return _email(
        envelope,
        "processed",
        file,
        "Processed",
        subject,
        [],
        accent=WARN if rejected else GOOD,
        headline=headline + ".",
        created=created,
        rejected=rejected,
        existing=existing,
        totals=totals(currency_totals),
        result_name=result_name,
        emails_line=(
            f"{plural(emails, 'invoice email')} queued, sent paced after this report"
            if emails
            else "none asked for"
        ),
        sms_line=(
            f"{plural(sms, 'message')} recorded for the SMS gateway" if sms else "none asked for"
        ),
    )


def stalled(envelope: Envelope, file: dict[str, Any], *, state: str, error: str) -> Prepared:
    """Sent once per file when it cannot move on for a reason outside the file (disk, folder)."""
    return _email(
        envelope,
        "stalled",
        file,
        "Waiting",
        f"waiting ({state}): {error}",
        [],
        accent=WARN,
        headline=f"Waiting in {state}: a problem outside the file stops it from moving on.",
        state=state,
        error=error,
    )


def rejection(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    code: str,
    message: str,
    line: int | None,
    result_name: str,
    first_errors: Sequence[tuple[Any, ...]] = (),
    rejected: int = 0,
    errors_csv: bytes | None = None,
) -> Prepared:
    shown = list(first_errors) or first_rows(errors_csv)
    attachment = _attachment_name(file, "errors")
    return _email(
        envelope,
        "rejected",
        file,
        "Rejected",
        f"rejected ({code}), no invoices created",
        _attachments(attachment, errors_csv),
        accent=BAD,
        headline=f"The whole file was rejected ({code}): no invoice was created.",
        code=code,
        message=message,
        line=line,
        result_name=result_name,
        first_errors=_readable(shown[:FIRST_ERRORS]),
        more_text=_more(rejected, min(len(shown), FIRST_ERRORS), attachment if errors_csv else ""),
        attachment=attachment if errors_csv else "",
    )


def bounces(
    envelope: Envelope,
    file: dict[str, Any],
    *,
    sent: int,
    failed: int,
    first_failures: Sequence[tuple[Any, ...]],
    failures_csv: bytes,
) -> Prepared:
    """Customer invoice emails the server refused for good (5xx), once per file."""
    total = sent + failed
    attachment = _attachment_name(file, "email-failures")
    return _email(
        envelope,
        "bounced",
        file,
        "Customer emails failed",
        f"{count(failed)} of {plural(total, 'customer email')} failed",
        _attachments(attachment, failures_csv),
        accent=BAD,
        headline=f"{count(failed)} of {plural(total, 'customer email')} could not be delivered.",
        sent=sent,
        failed=failed,
        first_failures=list(first_failures)[:FIRST_ERRORS],
        more_text=_more(failed, min(len(first_failures), FIRST_ERRORS), attachment),
        attachment=attachment,
    )
