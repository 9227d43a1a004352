"""Upgrades keep what an install holds: migrations run on a database made by an older release."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from worker.state import SQLiteStore
from worker.state.schema import migrations

ROW = (
    "INSERT INTO invoices (invoice_number, merchant_reference, transaction_id, file_id, type,"
    " status, amount, currency, token, payment_link_url, sms_state, customer_phone,"
    " email_attempts, created_at, updated_at)"
    " VALUES (?, ?, ?, 1, ?, 'NEW', 500, 'USD', ?, 'https://pay/' || ?, ?, ?, ?, 'x', 'x')"
)


def database_before(path: Path, migration: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.apply(sqlite_utils.Database(conn), stop_before=migration)
    conn.executemany(
        ROW,
        [
            (101, "REF-1", None, "SINGLE", "tok1", "tok1", "pending", "+250788000000", 2),
            (102, "REF-2", None, "SINGLE", "tok2", "tok2", None, None, 0),
            (103, None, "TX-1", "BATCH", "tok3", "tok3", None, None, 0),
        ],
    )
    conn.close()


def test_an_install_from_before_m005_keeps_its_invoices_and_batch_lookups(tmp_path: Path):
    # Given a database made before the invoice indexes changed, holding three invoices
    path = tmp_path / "state.db"
    database_before(path, "m005_cheaper_invoice_indexes")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        before = conn.execute("SELECT * FROM invoices ORDER BY 1").fetchall()
    # When this release opens it
    store = SQLiteStore(path).open()
    # Then every invoice is there as it was, with its SMS still pending
    assert [tuple(r) for r in store.all("SELECT * FROM invoices ORDER BY 1")] == before
    assert [r["invoice_number"] for r in store.all("SELECT * FROM sms_pending")] == [101]
    # And a batch is still found by its transaction id, through an index, and is unique
    plan = store.all("EXPLAIN QUERY PLAN SELECT 1 FROM invoices WHERE transaction_id = 'TX-1'")
    assert "invoices_transaction" in plan[0]["detail"]
    with pytest.raises(sqlite3.IntegrityError), store.atomic() as conn:
        conn.execute(ROW, (104, None, "TX-1", "BATCH", "tok4", "tok4", None, None, 0))
    # And references stay unique, while a token no longer has an index to keep
    with pytest.raises(sqlite3.IntegrityError), store.atomic() as conn:
        conn.execute(ROW, (105, "REF-1", None, "SINGLE", "tok5", "tok5", None, None, 0))
    with store.atomic() as conn:
        conn.execute(ROW, (106, "REF-6", None, "SINGLE", "tok1", "tok1", None, None, 0))
    # And every other index of the table is there again
    indexes = {
        r["name"]
        for r in store.all(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'invoices' AND type = 'index'"
        )
        if r["name"] != "invoices"
    }
    assert indexes == {
        "sqlite_autoindex_invoices_1",  # merchant_reference UNIQUE
        "invoices_transaction",
        "invoices_file",
        "invoices_batch",
        "invoices_email_due",
        "invoices_email_sending",
        "invoices_email_failed",
    }
    store.close()


def test_a_database_is_migrated_once_however_often_it_is_opened(tmp_path: Path):
    path = tmp_path / "state.db"
    for _ in range(2):
        SQLiteStore(path).open().close()
    conn = sqlite3.connect(path)
    applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert applied == [
        "m001_schema",
        "m002_batches_and_payments",
        "m003_customer_emails",
        "m004_result_names",
        "m005_cheaper_invoice_indexes",
        "m006_final_paths",
        "m007_claimed_mtime",
        "m008_sftp",
        "m010_cancellations",
        "m011_status_files",
        "m012_existing_rows",
        "m013_decided_chunks",
    ]
