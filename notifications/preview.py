"""Render every email with sample data, as the HTML a mail client shows.

    python -m notifications.preview docs/emails

writes ``<name>.html`` (and ``<name>.txt``, the plain-text part) for each
email; ``docs/emails/screenshots.sh`` turns them into PNGs with headless
Chromium, a tool for the developer's machine only.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path

from notifications import reports
from notifications.customers import Invoice, Merchant, invoice_email
from notifications.prepared import Prepared
from notifications.reports import Envelope

ENVELOPE = Envelope(sender="invoice-worker@example.com", admins=["finance@example.com"])
FILE = {"id": 42, "name": "erp-export-2025-03.csv", "kind": "invoices"}
MERCHANT = Merchant(name="Kigali Hardware Ltd", sender="billing@kigali-hardware.example")
ERRORS = [
    (3, "INV-2025-0003", "INVALID_AMOUNT(amount)"),
    (7, "INV-2025-0007", "INVALID_EMAIL(customer_email)"),
    (12, "INV-2025-0012", "EXPIRY_IN_PAST(request_expiry_date)"),
    (15, "", "REQUIRED(merchant_reference)"),
    (21, "INV-2025-0021", "INVALID_CURRENCY(currency);PHONE_REQUIRED_FOR_SMS(customer_phone)"),
]
CUSTOMERS = {
    "en": ("Ada Lovelace", 1250000, "USD", "Steel beams, 12 units"),
    "fr": ("Amélie Mukamana", 2500000, "RWF", "Ciment Portland, 50 sacs"),
    "rw": ("Jean Bosco Habimana", 185000, "RWF", "Amabati 20 n'imisumari"),
    "ar": ("ليلى حداد", 100000, "JOD", "أنابيب نحاسية، 30 قطعة"),
}


def _csv(rows: Sequence[tuple[object, ...]], header: tuple[str, ...]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def examples() -> Iterator[tuple[str, Prepared | EmailMessage]]:
    errors_csv = _csv(list(ERRORS), ("line_number", "merchant_reference", "errors"))
    yield (
        "validated",
        reports.validation(
            ENVELOPE,
            FILE,
            rows=1250,
            valid=1245,
            rejected=5,
            first_errors=ERRORS,
            unknown_columns=["internal_id", "sales_rep"],
            next_step="processing the valid rows now",
            errors_csv=errors_csv,
        ),
    )
    yield (
        "processed",
        reports.processing(
            ENVELOPE,
            FILE,
            created=1245,
            rejected=5,
            currency_totals=[
                ("RWF", 1100, 275_000_000),
                ("USD", 120, 1_850_075),
                ("JOD", 25, 2_500_000),
            ],
            result_name="erp-export-2025-03.csv.results.csv",
            emails=1180,
            sms=310,
        ),
    )
    yield (
        "rejected",
        reports.rejection(
            ENVELOPE,
            FILE,
            code="TOO_MANY_ERRORS",
            message=(
                "5 of 8 rows failed (62.5%, more than max_error_rate 10.0%); no invoice was created"
            ),
            line=None,
            result_name="erp-export-2025-03.csv.error.json",
            rejected=5,
            errors_csv=errors_csv,
        ),
    )
    failures = [
        (
            7,
            "INV-2025-0007",
            "a.uwase@example.org",
            "550 5.1.1 <a.uwase@example.org>: Recipient address rejected: User unknown",
        ),
        (19, "INV-2025-0019", "old-address@example.net", "550 5.2.1 Mailbox disabled"),
    ]
    yield (
        "bounced",
        reports.bounces(
            ENVELOPE,
            FILE,
            sent=1178,
            failed=2,
            first_failures=failures,
            failures_csv=_csv(
                failures, ("line_number", "merchant_reference", "customer_email", "error")
            ),
        ),
    )
    yield (
        "stalled",
        reports.stalled(
            ENVELOPE,
            FILE,
            state="processing",
            error="[Errno 28] No space left on device: 'outbox/'",
        ),
    )
    for number, (language, (name, amount, currency, description)) in enumerate(
        CUSTOMERS.items(), start=100_000_000_001
    ):
        invoice = Invoice(
            number=number,
            email="customer@example.com",
            name=name,
            language=language,
            amount=amount,
            currency=currency,
            expires_at="2025-04-30T21:59:00.000000Z",
            description=description,
            link="https://pay.example.com/pay/3f9a1c0e5b7d4e2a8c6b1d0f9e8a7b6c",
        )
        yield f"invoice-{language}", invoice_email(MERCHANT, invoice)


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, msg in examples():
        html = msg.get_body(("html",))
        text = msg.get_body(("plain",))
        assert html is not None and text is not None
        target = folder / f"{name}.html"
        # The subject sits in the page's title: the screenshot shows the body only.
        target.write_text(html.get_content(), encoding="utf-8")
        (folder / f"{name}.txt").write_text(
            f"Subject: {msg['Subject']}\n\n{text.get_content()}", encoding="utf-8"
        )
        written.append(target)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/emails")):
        print(path)
