"""Builders and waiters shared by the tests: real files, real processes."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from worker.settings import Settings
from worker.state import File, Store
from worker.state.files import FINAL_STATES

INVOICE_HEADER = (
    "service_command",
    "merchant_reference",
    "amount",
    "currency",
    "language",
    "customer_email",
    "request_expiry_date",
    "notification_type",
    "customer_name",
    "customer_phone",
    "order_description",
    "payment_account",
    "link_command",
    "return_url",
)


def future(days: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def invoice_row(n: int = 1, **fields: Any) -> dict[str, Any]:
    row = {
        "service_command": "PAYMENT_LINK",
        "merchant_reference": f"REF-{n:06d}",
        "amount": "10000",
        "currency": "USD",
        "language": "en",
        "customer_email": f"customer{n}@example.com",
        "request_expiry_date": future(),
        "notification_type": "NONE",
        "customer_name": f"Customer {n}",
        "customer_phone": "",
        "order_description": "",
        "payment_account": "",
        "link_command": "",
        "return_url": "",
    }
    row.update(fields)
    return row


def invoice_csv(
    rows: list[dict[str, Any]],
    header: tuple[str, ...] = INVOICE_HEADER,
    delimiter: str = ",",
    newline: str = "\n",
) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out,
        fieldnames=list(header),
        delimiter=delimiter,
        lineterminator=newline,
        extrasaction="ignore",
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def drop(settings: Settings, name: str, content: str | bytes) -> Path:
    """Write-then-rename into the inbox, as the README tells ERPs to."""
    data = content.encode() if isinstance(content, str) else content
    tmp = settings.inbox / f".{name}.tmp"
    tmp.write_bytes(data)
    target = settings.inbox / name
    os.rename(tmp, target)
    return target


def wait_files(
    store: Store,
    count: int,
    timeout: float = 30,
    states: frozenset[str] = FINAL_STATES | {"awaiting_approval"},
) -> list[File]:
    deadline = time.monotonic() + timeout
    rows: list[File] = []
    while time.monotonic() < deadline:
        rows = [File.from_row(r) for r in store.all("SELECT * FROM files ORDER BY id")]
        if len(rows) >= count and all(r.state in states for r in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"files not final after {timeout}s: {[(r.id, r.state) for r in rows]}")


def read_results(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("INVOICE_WORKER_", "REDIS_URL"))
    }
    env.update(
        {
            "INVOICE_WORKER_HOME": str(home),
            "INVOICE_WORKER_SETTLE_SECONDS": "0.1",
            "INVOICE_WORKER_SCAN_SECONDS": "0.5",
        }
    )
    env.update(extra)
    return env


def cli(
    *args: str, home: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """The real ``invoice-worker`` process."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=cli_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home,
    )


# -- batch requests and payments ------------------------------------------------

WEBHOOK_SECRET = "merchant-secret-for-tests"
PAYMENT_HEADER = ("payment_reference", "invoice_number", "amount", "currency", "paid_at")


def batch_request(transaction_id: str | None, numbers: list[Any], **extra: Any) -> dict[str, Any]:
    """IremboPay's request body; ``transaction_id=None`` leaves the key out."""
    body: dict[str, Any] = {"invoiceNumbers": [str(n) for n in numbers], **extra}
    if transaction_id is not None:
        body["transactionId"] = transaction_id
    return body


def payment_row(reference: str, invoice_number: Any, amount: Any, **fields: Any) -> dict[str, Any]:
    row = {
        "payment_reference": reference,
        "invoice_number": str(invoice_number),
        "amount": str(amount),
        "currency": "USD",
        "paid_at": "",
    }
    row.update(fields)
    return row


def payment_csv(rows: list[dict[str, Any]]) -> str:
    return invoice_csv(rows, PAYMENT_HEADER)


def run_file(h: Any, name: str, content: str | bytes, timeout: float = 30) -> File:
    """Drop one file through a running pipeline harness; returns its final files row."""
    before = h.store.one("SELECT count(*) AS n FROM files")["n"]
    h.drop(name, content)
    return h.wait_final(before + 1, timeout)[-1]


def create_invoices(h: Any, rows: list[dict[str, Any]], name: str = "invoices.csv") -> list[int]:
    """Invoices made the real way (an invoice file through the pipeline): their numbers,
    in row order."""
    file = run_file(h, name, invoice_csv(rows))
    assert file.state == "processed" and file.created == len(rows), file
    numbers = h.store.all(
        "SELECT invoice_number FROM invoices WHERE file_id = ? ORDER BY line_number",
        (file.id,),
    )
    return [int(r["invoice_number"]) for r in numbers]


def batch_results(settings: Settings, name: str) -> list[dict[str, Any]]:
    import json

    return json.loads((settings.outbox / f"{name}.results.json").read_text("utf-8"))


# -- crash tests: the real worker process, killed and started again ------------


def big_invoice_file(
    path: Path, rows: int, bad_every: int = 100, notification_type: str = "NONE"
) -> int:
    """A file of ``rows`` invoices where every ``bad_every``-th amount is bad; returns the
    number of valid rows."""
    n = pl.col("n")
    frame = pl.DataFrame({"n": pl.int_range(1, rows + 1, eager=True)}).select(
        service_command=pl.lit("PAYMENT_LINK"),
        merchant_reference=pl.lit("REF-") + n.cast(pl.String).str.zfill(7),
        amount=pl.when(n % bad_every == 0)
        .then(pl.lit("1.5"))
        .otherwise((n * 7 % 100000 + 1).cast(pl.String)),
        currency=pl.lit("USD"),
        language=pl.lit("en"),
        customer_email=pl.lit("c") + n.cast(pl.String) + "@example.com",
        request_expiry_date=pl.lit(future()),
        notification_type=pl.lit(notification_type),
    )
    frame.write_csv(path)
    return rows - rows // bad_every


def db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "var" / "state.db")
    conn.row_factory = sqlite3.Row
    return conn


def start(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run", *args],
        env=cli_env(home, **env),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(check, timeout: float = 60, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except sqlite3.OperationalError:
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached")
