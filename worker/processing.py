"""Validated chunks become invoices: one transaction per chunk, with its "done" mark.

A chunk's invoices and the row saying the chunk is done commit together, so a
crash leaves either both or neither, and a re-run skips what is done. Numbers
and tokens come from the chunk file, so a re-run creates the same invoices.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl

from worker import validation
from worker.store import Store, now_iso
from worker.validation import ExistsCheck

INSERT_COLUMNS = (
    "invoice_number",
    "merchant_reference",
    "file_id",
    "line_number",
    "type",
    "status",
    "amount",
    "currency",
    "language",
    "customer_email",
    "customer_name",
    "customer_phone",
    "notification_type",
    "expires_at",
    "order_description",
    "payment_account",
    "link_command",
    "return_url",
    "token",
    "payment_link_url",
    "email_state",
    "sms_state",
    "created_at",
    "updated_at",
)
#: What a row binds: the rest is the same for the whole chunk, or derived, and is
#: written by the statement itself (see :func:`insert_sql`). Fewer values bound per row
#: is most of what Python costs per invoice.
BOUND_COLUMNS = (
    "invoice_number",
    "merchant_reference",
    "line_number",
    "amount",
    "currency",
    "language",
    "customer_email",
    "customer_name",
    "customer_phone",
    "notification_type",
    "expires_at",
    "order_description",
    "payment_account",
    "link_command",
    "return_url",
    "token",
)
#: Page cache of the connection that bulk-writes (KiB, as SQLite takes it when negative):
#: the random payment tokens' unique index is written all over, and with SQLite's
#: default of 2 MiB every chunk rereads and spills most of it.
BULK_CACHE_KIB = 64 * 1024


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def insert_sql(file_id: int, link_base: str, stamp: str) -> str:
    """The INSERT for one chunk's rows: constants and derived columns in the SQL text."""
    param = {name: f"?{n}" for n, name in enumerate(BOUND_COLUMNS, start=1)}
    wants = f"',' || {param['notification_type']} || ','"
    values = {
        **param,
        "file_id": str(int(file_id)),
        "type": "'SINGLE'",
        "status": "'NEW'",
        "payment_link_url": f"{_literal(link_base.rstrip('/') + '/')} || {param['token']}",
        "email_state": f"CASE WHEN instr({wants}, ',EMAIL,') > 0 THEN 'pending' END",
        "sms_state": f"CASE WHEN instr({wants}, ',SMS,') > 0 THEN 'pending' END",
        "created_at": _literal(stamp),
        "updated_at": _literal(stamp),
    }
    return (
        f"INSERT INTO invoices ({', '.join(INSERT_COLUMNS)}) "
        f"VALUES ({', '.join(values[c] for c in INSERT_COLUMNS)})"
    )


def link(base: str) -> pl.Expr:
    return pl.lit(base.rstrip("/") + "/") + pl.col("token")


def invoice_rows(
    chunk: pl.DataFrame, file_id: int, number_base: int, link_base: str
) -> pl.DataFrame:
    """The valid rows of a chunk, shaped as ``invoices`` rows."""
    stamp = now_iso()
    wants = pl.col("notification_type").str.split(",")
    return chunk.filter(pl.col("valid")).select(
        (pl.col("ordinal") + number_base).alias("invoice_number"),
        "merchant_reference",
        pl.lit(file_id).alias("file_id"),
        "line_number",
        pl.lit("SINGLE").alias("type"),
        pl.lit("NEW").alias("status"),
        "amount",
        "currency",
        "language",
        "customer_email",
        "customer_name",
        "customer_phone",
        "notification_type",
        "expires_at",
        "order_description",
        "payment_account",
        "link_command",
        "return_url",
        "token",
        link(link_base).alias("payment_link_url"),
        pl.when(wants.list.contains("EMAIL")).then(pl.lit("pending")).alias("email_state"),
        pl.when(wants.list.contains("SMS")).then(pl.lit("pending")).alias("sms_state"),
        pl.lit(stamp).alias("created_at"),
        pl.lit(stamp).alias("updated_at"),
    )


#: Up to this many references are looked up with ``IN (...)``; more go through a temp
#: table (SQLite caps the parameters of one statement, and the join is faster then).
IN_LIST_MAX = 500


def _taken(conn: sqlite3.Connection, refs: list[str]) -> set[str]:
    if len(refs) <= IN_LIST_MAX:
        marks = ",".join("?" * len(refs))
        sql = f"SELECT merchant_reference FROM invoices WHERE merchant_reference IN ({marks})"
        return {r[0] for r in conn.execute(sql, refs)} if refs else set()
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS refs (ref TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM refs")
    conn.executemany("INSERT OR IGNORE INTO refs VALUES (?)", ((r,) for r in refs))
    rows = conn.execute(
        "SELECT ref FROM refs JOIN invoices ON invoices.merchant_reference = refs.ref"
    ).fetchall()
    return {r[0] for r in rows}


def process_chunk(
    store: Store,
    file_id: int,
    index: int,
    path: Path,
    number_base: int,
    link_base: str,
) -> int | None:
    """Create a chunk's invoices; None when it was already done. Returns the count created."""
    if store.one("SELECT 1 FROM chunks WHERE file_id = ? AND chunk = ?", (file_id, index)):
        return None
    chunk = validation.recent.read(path, ["valid", "ordinal", *BOUND_COLUMNS[1:]])
    rows = chunk.filter(pl.col("valid")).select(
        (pl.col("ordinal") + number_base).alias("invoice_number"), *BOUND_COLUMNS[1:]
    )
    insert = insert_sql(file_id, link_base, now_iso())
    store.conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
    with store.write() as conn:
        if conn.execute(
            "SELECT 1 FROM chunks WHERE file_id = ? AND chunk = ?", (file_id, index)
        ).fetchone():
            return None
        conn.execute("SAVEPOINT bulk")
        try:
            conn.executemany(insert, rows.iter_rows())
        except sqlite3.IntegrityError:
            # Another file created one of these references after we validated.
            conn.execute("ROLLBACK TO bulk")
            taken = _taken(conn, rows["merchant_reference"].to_list())
            late = rows.filter(pl.col("merchant_reference").is_in(list(taken)))
            conn.executemany(
                "INSERT OR IGNORE INTO late_rejections VALUES (?, ?, 'MERCHANT_REFERENCE_EXISTS')",
                ((file_id, line) for line in late["line_number"]),
            )
            rows = rows.filter(~pl.col("merchant_reference").is_in(list(taken)))
            conn.executemany(insert, rows.iter_rows())
        conn.execute("RELEASE bulk")
        conn.execute(
            "INSERT INTO chunks (file_id, chunk, created, done_at) VALUES (?, ?, ?, ?)",
            (file_id, index, len(rows), now_iso()),
        )
    return len(rows)


def existing_references(store: Store) -> ExistsCheck:
    """A check for the validator: which of a chunk's references are already invoiced."""

    def check(refs: pl.Series) -> pl.Series:
        if store.one("SELECT 1 FROM invoices WHERE merchant_reference IS NOT NULL LIMIT 1") is None:
            return pl.repeat(False, len(refs), eager=True)
        taken = _taken(store.conn, refs.drop_nulls().unique().to_list())
        return refs.is_in(list(taken)).fill_null(False)

    return check
