"""Validated chunks become invoices: one transaction per chunk, with its "done" mark.

A chunk's invoices and the row saying the chunk is done commit together, so a
crash leaves either both or neither, and a re-run skips what is done. Numbers
and tokens come from the chunk file, so a re-run creates the same invoices.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl

from worker.kinds.invoices.validation import ExistsCheck
from worker.pipeline import chunks
from worker.state import Store, staging
from worker.state.files import now_iso

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
#: the merchant references' unique index is written wherever the ERP's references fall,
#: and with SQLite's default of 2 MiB a chunk in random order rereads and spills most of it.
BULK_CACHE_KIB = 64 * 1024


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _values(file_id: int, link_base: str, stamp: str, source: dict[str, str]) -> str:
    """The value of each of :data:`INSERT_COLUMNS`: ``source`` names where the bound
    columns come from; constants and derived columns are written in the SQL itself."""
    wants = f"',' || {source['notification_type']} || ','"
    values = {
        **source,
        "file_id": str(int(file_id)),
        "type": "'SINGLE'",
        "status": "'NEW'",
        "payment_link_url": f"{_literal(link_base.rstrip('/') + '/')} || {source['token']}",
        "email_state": f"CASE WHEN instr({wants}, ',EMAIL,') > 0 THEN 'pending' END",
        "sms_state": f"CASE WHEN instr({wants}, ',SMS,') > 0 THEN 'pending' END",
        "created_at": _literal(stamp),
        "updated_at": _literal(stamp),
    }
    return ", ".join(values[c] for c in INSERT_COLUMNS)


_INTO = f"INSERT INTO invoices ({', '.join(INSERT_COLUMNS)})"


def insert_sql(file_id: int, link_base: str, stamp: str) -> str:
    """The INSERT for one chunk's rows, bound one row at a time (``executemany``)."""
    params = {name: f"?{n}" for n, name in enumerate(BOUND_COLUMNS, start=1)}
    return f"{_INTO} VALUES ({_values(file_id, link_base, stamp, params)})"


def insert_select_sql(file_id: int, link_base: str, stamp: str, table: str) -> str:
    """The INSERT for one chunk's rows, read from a staging ``table`` of BOUND_COLUMNS."""
    columns = {name: f'"{name}"' for name in BOUND_COLUMNS}
    return f"{_INTO} SELECT {_values(file_id, link_base, stamp, columns)} FROM {table}"


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
    if _done(store.conn, file_id, index):
        return None
    return _create(store, file_id, index, _prepare(path, number_base), link_base)


def process_chunks(
    store: Store,
    file_id: int,
    chunks: list[tuple[int, Path]],
    number_base: int,
    link_base: str,
    after_each: Callable[[], None],
) -> None:
    """:func:`process_chunk` for each of ``chunks`` in order, preparing the next one
    (its rows, its staging file) in a thread while this one's are inserted: both
    ADBC and SQLite release the GIL, so on two cores the two overlap."""
    todo = [(i, p) for i, p in chunks if not _done(store.conn, file_id, i)]
    if len(todo) <= 1:
        # One chunk, as every small file has: no thread to start.
        for index, path in todo:
            _create(store, file_id, index, _prepare(path, number_base), link_base)
            after_each()
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage") as ahead:
        pending = ahead.submit(_prepare, todo[0][1], number_base)
        try:
            for n, (index, _) in enumerate(todo):
                prepared = pending.result()
                if n + 1 < len(todo):
                    pending = ahead.submit(_prepare, todo[n + 1][1], number_base)
                _create(store, file_id, index, prepared, link_base)
                after_each()
        finally:
            # Stopped by an error: the chunk prepared ahead is not used, nor its file.
            _discard(pending)


def _discard(pending: Future[pl.DataFrame | Path]) -> None:
    if pending.cancel():
        return
    with contextlib.suppress(BaseException):
        prepared = pending.result()
        if isinstance(prepared, Path):
            prepared.unlink(missing_ok=True)


def _prepare(path: Path, number_base: int) -> pl.DataFrame | Path:
    """A chunk's valid rows as ``invoices`` rows: in memory, or in a staging file if many."""
    chunk = chunks.read(path, ["valid", "ordinal", *BOUND_COLUMNS[1:]])
    rows = chunk.filter(pl.col("valid")).select(
        (pl.col("ordinal") + number_base).alias("invoice_number"), *BOUND_COLUMNS[1:]
    )
    if len(rows) < staging.STAGE_MIN_ROWS:
        return rows
    # A name of its own: a delivery that took over an expired lease must not share it.
    stage = path.with_name(f"{path.stem}.{secrets.token_hex(4)}.stage.db")
    staging.write(rows, stage)
    return stage


def _create(
    store: Store, file_id: int, index: int, prepared: pl.DataFrame | Path, link_base: str
) -> int | None:
    """Commit a prepared chunk: rows bound one by one, or its staging file (then deleted)."""
    stamp = now_iso()
    if isinstance(prepared, pl.DataFrame):
        return _commit(store, file_id, index, _bound(file_id, prepared, link_base, stamp))
    with staging.attached(store.conn, prepared) as table:
        return _commit(store, file_id, index, _staged(file_id, table, link_base, stamp))


#: Creates a chunk's invoices inside the open transaction and returns how many. Called
#: again with ``late=True`` after a UNIQUE failure: another file created one of these
#: references after this one was validated, so those rows become late rejections.
Create = Callable[[sqlite3.Connection, bool], int]


def _done(conn: sqlite3.Connection, file_id: int, index: int) -> bool:
    sql = "SELECT 1 FROM chunks WHERE file_id = ? AND chunk = ?"
    return conn.execute(sql, (file_id, index)).fetchone() is not None


def _commit(store: Store, file_id: int, index: int, create: Create) -> int | None:
    store.conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
    with store.atomic() as conn:
        if _done(conn, file_id, index):
            return None
        conn.execute("SAVEPOINT bulk")
        try:
            created = create(conn, False)
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO bulk")
            created = create(conn, True)
        conn.execute("RELEASE bulk")
        conn.execute(
            "INSERT INTO chunks (file_id, chunk, created, done_at) VALUES (?, ?, ?, ?)",
            (file_id, index, created, now_iso()),
        )
    return created


_LATE = "INSERT OR IGNORE INTO late_rejections VALUES (?, ?, 'MERCHANT_REFERENCE_EXISTS')"


def _bound(file_id: int, rows: pl.DataFrame, link_base: str, stamp: str) -> Create:
    insert = insert_sql(file_id, link_base, stamp)

    def create(conn: sqlite3.Connection, late: bool) -> int:
        todo = rows
        if late:
            taken = list(_taken(conn, rows["merchant_reference"].to_list()))
            gone = rows.filter(pl.col("merchant_reference").is_in(taken))
            conn.executemany(_LATE, ((file_id, line) for line in gone["line_number"]))
            todo = rows.filter(~pl.col("merchant_reference").is_in(taken))
        conn.executemany(insert, todo.iter_rows())
        return len(todo)

    return create


def _staged(file_id: int, table: str, link_base: str, stamp: str) -> Create:
    insert = insert_select_sql(file_id, link_base, stamp, table)
    # A lookup per staged row through the unique index: IN (SELECT ...) would list
    # every reference of the table first, with the write lock held.
    taken = (
        "EXISTS (SELECT 1 FROM main.invoices AS i"
        f" WHERE i.merchant_reference = {table}.merchant_reference)"
    )

    def create(conn: sqlite3.Connection, late: bool) -> int:
        if not late:
            return conn.execute(insert).rowcount
        conn.execute(
            f"INSERT OR IGNORE INTO late_rejections SELECT ?, line_number,"
            f" 'MERCHANT_REFERENCE_EXISTS' FROM {table} WHERE {taken}",
            (file_id,),
        )
        return conn.execute(f"{insert} WHERE NOT {taken}").rowcount

    return create


def existing_references(store: Store) -> ExistsCheck:
    """A check for the validator: which of a chunk's references are already invoiced."""

    def check(refs: pl.Series) -> pl.Series:
        if store.one("SELECT 1 FROM invoices WHERE merchant_reference IS NOT NULL LIMIT 1") is None:
            return pl.repeat(False, len(refs), eager=True)
        taken = _taken(store.conn, refs.drop_nulls().unique().to_list())
        return refs.is_in(list(taken)).fill_null(False)

    return check
