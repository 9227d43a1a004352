"""Upgrades keep what an install holds: migrations run on a database made by an older release."""

from __future__ import annotations

import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
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


# -- both backends ----------------------------------------------------------------------


def test_every_sqlite_migration_has_its_postgresql_port_under_the_same_name():
    # A new migration in worker/state/schema.py needs its entry in schema_pg.MIGRATIONS.
    from worker.state import schema_pg

    assert [name for name, _ in schema_pg.MIGRATIONS] == [m.name for m in migrations._migrations]


def _shape(store) -> dict[str, object]:
    """Tables with their columns, named indexes, views and triggers, as the store has them."""
    from worker.state.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        columns = store.all(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE table_schema = 'public' AND t.table_type = 'BASE TABLE'"
            " AND table_name != '_migrations'"
        )
        indexes = store.all(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            " AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'"
        )
        views = store.all("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
        triggers = store.all("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
    else:
        tables = [
            r[0]
            for r in store.all(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name != '_sqlite_migrations'"
            )
        ]
        columns = [(t, c["name"]) for t in tables for c in store.all(f"PRAGMA table_info({t})")]
        indexes = store.all(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name != '_sqlite_migrations'"
        )
        views = store.all("SELECT name FROM sqlite_master WHERE type = 'view'")
        triggers = store.all("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    return {
        "columns": sorted((str(t), str(c)) for t, c in columns),
        "indexes": sorted(str(r[0]) for r in indexes),
        "views": sorted(str(r[0]) for r in views),
        "triggers": sorted(str(r[0]) for r in triggers),
    }


def test_both_backends_end_with_the_same_tables_columns_indexes_views_and_triggers(
    tmp_path: Path, postgres, database_url_factory
):
    # Given the schema migrated on SQLite and on PostgreSQL
    from worker.state.postgres import PostgresStore

    sqlite_store = SQLiteStore(tmp_path / "state.db").open()
    pg_store = PostgresStore(database_url_factory()).open()
    # Then they hold the same tables, columns, indexes, views and triggers
    sqlite_shape, pg_shape = _shape(sqlite_store), _shape(pg_store)
    assert sqlite_shape["columns"], "the schema has tables"
    assert pg_shape == sqlite_shape
    sqlite_store.close()
    pg_store.close()


def test_a_postgresql_database_is_migrated_once_by_processes_opening_it_at_once(
    database_url_factory,
):
    # Given four stores opening one new database at the same moment
    from worker.state.postgres import PostgresStore

    url = database_url_factory()
    stores = [PostgresStore(url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: s.open(), stores))
    # Then each migration was applied once, in order
    applied = [r[0] for r in stores[0].all("SELECT name FROM _migrations ORDER BY id")]
    assert applied == [m.name for m in migrations._migrations]
    # And opening it again applies nothing
    PostgresStore(url).open().close()
    assert stores[0].value("SELECT count(*) FROM _migrations") == len(applied)
    for s in stores:
        s.close()


@pytest.mark.backends
def test_references_and_transaction_ids_are_unique_on_both_backends_and_tokens_are_not(store):
    with store.atomic() as conn:
        conn.execute(ROW, (101, "REF-1", None, "SINGLE", "tok1", "tok1", None, None, 0))
        conn.execute(ROW, (103, None, "TX-1", "BATCH", "tok3", "tok3", None, None, 0))
    with pytest.raises(store.integrity_errors), store.atomic() as conn:
        conn.execute(ROW, (104, None, "TX-1", "BATCH", "tok4", "tok4", None, None, 0))
    with pytest.raises(store.integrity_errors), store.atomic() as conn:
        conn.execute(ROW, (105, "REF-1", None, "SINGLE", "tok5", "tok5", None, None, 0))
    with store.atomic() as conn:
        conn.execute(ROW, (106, "REF-6", None, "SINGLE", "tok1", "tok1", None, None, 0))
    assert [r[0] for r in store.all("SELECT invoice_number FROM invoices ORDER BY 1")] == [
        101,
        103,
        106,
    ]
    assert [r["invoice_number"] for r in store.all("SELECT * FROM sms_pending")] == []


@pytest.mark.backends
def test_a_status_change_is_recorded_by_the_trigger_with_the_payment_that_made_it(store):
    # Given an invoice and a payment of it
    with store.atomic() as conn:
        conn.execute(ROW, (101, "REF-1", None, "SINGLE", "tok1", "tok1", None, None, 0))
        conn.execute(
            "INSERT INTO payments (payment_reference, file_id, line_number, invoice_number,"
            " amount, currency, paid_at, created_at) VALUES ('PAY-1', 1, 2, 101, 500, 'USD',"
            " 'x', 'x')"
        )
    # When it is paid, then its status is set again to the same, then it is cancelled
    for status in ("PAID", "PAID", "CANCELLED"):
        with store.atomic() as conn:
            conn.execute("UPDATE invoices SET status = ? WHERE invoice_number = 101", (status,))
    # Then two changes are recorded, the payment named on the first
    rows = store.all(
        "SELECT invoice_number, merchant_reference, status, payment_reference, changed_at"
        " FROM status_changes ORDER BY id"
    )
    assert [tuple(r)[:4] for r in rows] == [
        (101, "REF-1", "PAID", "PAY-1"),
        (101, "REF-1", "CANCELLED", None),
    ]
    assert all(len(r["changed_at"]) == 20 and r["changed_at"].endswith("Z") for r in rows)
