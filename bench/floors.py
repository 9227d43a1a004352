"""The floors the product is held against, each run as its own process by the benchmark.

- ``polars FILE``: the minimal polars script: read every column as text, apply
  every rule of SPEC 3.1 (the product's own expressions from ``rules.columns``)
  and build the per-row error table. Nothing else.
- ``executemany DB ROWS`` and ``adbc DB ROWS``: the bulk load of the valid
  rows (already shaped as ``invoices`` rows, in a Parquet file) into the
  product's schema, in one transaction.
- ``copy URL ROWS``: the same load into the product's schema on PostgreSQL: one
  ``COPY invoices (...) FROM STDIN`` in one transaction, fed CSV that polars writes.
- ``plain FILE DB``: the plain stack: a ``csv.DictReader`` loop applying the
  same rules in Python (email-validator per address), then sqlite-utils
  ``insert_all`` of the valid rows in one transaction.

Every load into SQLite uses the product's PRAGMAs (:data:`PRAGMAS`); the load into
PostgreSQL uses the server's defaults, as the product does.

The benchmark prepares ``DB`` or ``URL`` (the product's migrations, empty) and ``ROWS``
before it starts the clock; each command prints one JSON line of counts.
"""

from __future__ import annotations

import csv
import json
import re
import secrets
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from rules.invoices import INVOICE_COLUMNS
from worker.state.invoices import BULK_CACHE_KIB, INSERT_COLUMNS

LINK_BASE = "https://pay.example.com/pay/"
FIRST_NUMBER = 100_000_000_001


def floor_polars(path: Path) -> dict[str, int]:
    """Read and validate with polars only: the per-row error table."""
    from rules import values
    from rules.invoices import COLUMN_NAMES
    from rules.invoices import invoice_errors as errors_expr
    from worker.kinds.context import rules_context

    ctx = rules_context((), {}, None)
    frame = (
        pl.scan_csv(path, infer_schema=False)
        .with_row_index("line_number", offset=2)
        .select(
            "line_number",
            *[pl.col(c).str.strip_chars().replace("", None) for c in COLUMN_NAMES],
        )
        .collect()
    )
    # Lazy, as polars is best written: shared subexpressions are evaluated once.
    errors = (
        frame.lazy()
        .with_columns(
            _seen_in_file=~pl.col("merchant_reference").is_first_distinct(),
            _exists=pl.lit(False),
            _email_ok=values.email_ok(frame["customer_email"]),
        )
        .select("line_number", errors_expr(ctx).alias("errors"))
        .collect()
    )
    return {"rows": len(errors), "rejected": int((errors["errors"] != "").sum())}


#: The product's own settings for a bulk write, so that the floors differ from it in
#: method only: WAL, synchronous NORMAL, and the same page cache.
PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    f"PRAGMA cache_size = -{BULK_CACHE_KIB}",
)


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def floor_executemany(db: Path, rows_path: Path) -> dict[str, int]:
    rows = pl.read_parquet(rows_path)
    conn = _connect(db)
    marks = ", ".join("?" for _ in INSERT_COLUMNS)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        f"INSERT INTO invoices ({', '.join(INSERT_COLUMNS)}) VALUES ({marks})", rows.iter_rows()
    )
    conn.execute("COMMIT")
    return {"rows": len(rows)}


def floor_adbc(db: Path, rows_path: Path) -> dict[str, int]:
    import adbc_driver_sqlite.dbapi as adbc

    rows = pl.read_parquet(rows_path)
    # Autocommit, so that the PRAGMAs apply; the load is then one explicit transaction.
    with adbc.connect(str(db), autocommit=True) as conn, conn.cursor() as cur:
        for pragma in PRAGMAS:
            cur.execute(pragma)
        cur.execute("BEGIN IMMEDIATE")
        cur.adbc_ingest("invoices", rows.to_arrow(), mode="append")
        cur.execute("COMMIT")
    return {"rows": len(rows)}


#: Rows per slice of the CSV fed to COPY: one 1M-row CSV would be hundreds of MB at once.
COPY_SLICE = 100_000


def floor_copy(url: str, rows_path: Path) -> dict[str, int]:
    """``COPY`` of the valid rows into ``invoices`` on PostgreSQL, in one transaction."""
    import psycopg

    rows = pl.read_parquet(rows_path).select(INSERT_COLUMNS)
    names = ", ".join(INSERT_COLUMNS)
    # Not autocommit: the COPY is one transaction, committed as the block ends.
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY invoices ({names}) FROM STDIN (FORMAT csv)") as copy,
    ):
        for part in rows.iter_slices(COPY_SLICE):
            # CSV as PostgreSQL reads it: an empty field is NULL, "" an empty text.
            copy.write(part.write_csv(include_header=False, quote_style="necessary").encode())
    return {"rows": len(rows)}


# -- the plain stack -----------------------------------------------------------

REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
AMOUNT = re.compile(r"^[0-9]{1,10}$")
PHONE = re.compile(r"^\+?[0-9]+$")
URL = re.compile(r"(?i)^https?://[^\s/?#]+[^\s]*$")
# The plain stack hand-writes the checks, not the table of columns: that it shares.
LENGTHS = {c.name: c.max_length for c in INVOICE_COLUMNS if c.max_length}
REQUIRED = tuple(c.name for c in INVOICE_COLUMNS if c.required is True)


def _instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None and "T" in text.upper() else None


def row_errors(
    row: dict[str, str], seen: set[str], currencies: frozenset[str], now: datetime
) -> list[str]:
    """SPEC 3.1 for one row, the way a plain Python loop writes it."""
    from email_validator import EmailNotValidError, validate_email

    v = {k: (row.get(k) or "").strip() for k in (*REQUIRED, *LENGTHS, "link_command")}
    errors: dict[str, str] = {}
    for name in REQUIRED:
        if not v[name]:
            errors[name] = "REQUIRED"
    for name, limit in LENGTHS.items():
        if name not in errors and len(v[name]) > limit:
            errors[name] = "TOO_LONG"

    def check(name: str, bad: bool, code: str) -> None:
        if v[name] and name not in errors and bad:
            errors[name] = code

    check("service_command", v["service_command"] != "PAYMENT_LINK", "SERVICE_COMMAND_NOT_ALLOWED")
    ref = v["merchant_reference"]
    check("merchant_reference", not REFERENCE.match(ref), "INVALID_FORMAT")
    check("merchant_reference", ref in seen, "DUPLICATE_MERCHANT_REFERENCE")
    seen.add(ref)
    check(
        "amount",
        not AMOUNT.match(v["amount"]) or int(v["amount"] or 0) <= 0,
        "INVALID_AMOUNT",
    )
    check("currency", v["currency"].upper() not in currencies, "INVALID_CURRENCY")
    check("language", v["language"].lower() not in ("en", "ar", "fr", "rw"), "INVALID_VALUE")
    if v["customer_email"] and "customer_email" not in errors:
        try:
            validate_email(v["customer_email"], check_deliverability=False)
        except EmailNotValidError:
            errors["customer_email"] = "INVALID_EMAIL"
    when = _instant(v["request_expiry_date"])
    check("request_expiry_date", when is None, "INVALID_DATE")
    check("request_expiry_date", when is not None and when <= now, "EXPIRY_IN_PAST")
    wants = {w.strip() for w in v["notification_type"].upper().split(",")}
    check("notification_type", not wants <= {"EMAIL", "SMS", "NONE"}, "INVALID_VALUE")
    if not v["customer_phone"] and "SMS" in wants and "NONE" not in wants:
        errors["customer_phone"] = "PHONE_REQUIRED_FOR_SMS"
    check("customer_phone", not PHONE.match(v["customer_phone"]), "INVALID_FORMAT")
    check(
        "link_command", v["link_command"] not in ("", "AUTHORIZATION", "PURCHASE"), "INVALID_VALUE"
    )
    check("return_url", not URL.match(v["return_url"]), "INVALID_FORMAT")
    order = (*REQUIRED, *LENGTHS, "link_command")
    return [f"{errors[c]}({c})" for c in dict.fromkeys(order) if c in errors]


def floor_plain(path: Path, db_path: Path) -> dict[str, int]:
    import sqlite_utils

    from rules.values import currencies

    known, now = currencies(), datetime.now(UTC)
    seen: set[str] = set()
    valid: list[dict[str, object]] = []
    rows = rejected = 0
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for line_number, row in enumerate(csv.DictReader(fh), start=2):
            rows += 1
            if row_errors(row, seen, known, now):
                rejected += 1
                continue
            token = secrets.token_hex(16)
            wants = row["notification_type"].upper()
            valid.append(
                {
                    "invoice_number": FIRST_NUMBER + len(valid),
                    "merchant_reference": row["merchant_reference"].strip(),
                    "file_id": 1,
                    "line_number": line_number,
                    "type": "SINGLE",
                    "status": "NEW",
                    "amount": int(row["amount"]),
                    "currency": row["currency"].strip().upper(),
                    "language": row["language"].strip().lower(),
                    "customer_email": row["customer_email"].strip(),
                    "customer_name": row["customer_name"].strip() or None,
                    "customer_phone": row["customer_phone"].strip() or None,
                    "notification_type": wants,
                    "expires_at": _instant(row["request_expiry_date"].strip())
                    .astimezone(UTC)  # type: ignore[union-attr]
                    .strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "order_description": row["order_description"].strip() or None,
                    "payment_account": row["payment_account"].strip() or None,
                    "link_command": row["link_command"].strip() or None,
                    "return_url": row["return_url"].strip() or None,
                    "token": token,
                    "payment_link_url": LINK_BASE + token,
                    "email_state": "pending" if "EMAIL" in wants else None,
                    "sms_state": "pending" if "SMS" in wants else None,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            )
    db = sqlite_utils.Database(_connect(db_path))
    with db.atomic():
        db.table("invoices").insert_all(valid)
    return {"rows": rows, "rejected": rejected, "created": len(valid)}


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "copy":
        print(json.dumps(floor_copy(args[0], Path(args[1]))))
        return 0
    paths = [Path(a) for a in args]
    runs: dict[str, Callable[..., dict[str, Any]]] = {
        "polars": floor_polars,
        "executemany": floor_executemany,
        "adbc": floor_adbc,
        "plain": floor_plain,
    }
    print(json.dumps(runs[command](*paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
