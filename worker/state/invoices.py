"""Invoices: every query on ``invoices``, ``late_rejections`` and ``existing_rows``.

A chunk's invoices are written by one statement built for the chunk: bound one row
at a time for a small chunk, or ``INSERT ... SELECT`` from a staging table (see
:mod:`worker.state.staging`) for a big one. Either way they commit with the chunk's
"done" row (:mod:`worker.state.chunks`), so a crash leaves both or neither. So do the
chunk's rows that name an invoice with the same content (``existing_rows``, SPEC 13):
a results file written again after a crash still shows them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

import polars as pl

from worker.state import chunks
from worker.state.store import Connection, Store

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
#: The columns the statement fills itself: the same for the whole chunk, or derived.
CHUNK_COLUMNS = frozenset(
    {
        "file_id",
        "type",
        "status",
        "payment_link_url",
        "email_state",
        "sms_state",
        "created_at",
        "updated_at",
    }
)
#: What a row binds (see :func:`insert_sql`): fewer values bound per row is most of what
#: Python costs per invoice.
BOUND_COLUMNS = tuple(c for c in INSERT_COLUMNS if c not in CHUNK_COLUMNS)
#: Page cache of the connection that bulk-writes on SQLite (KiB, as SQLite takes it when
#: negative): the merchant references' unique index is written wherever the ERP's
#: references fall, and with SQLite's default of 2 MiB a chunk in random order rereads
#: and spills most of it.
BULK_CACHE_KIB = 64 * 1024
#: Up to this many references are looked up with ``IN (...)``; more as one JSON array
#: (SQLite caps the parameters of one statement, and the join is faster then).
IN_LIST_MAX = 500

#: Creates a chunk's invoices inside the open transaction and returns how many. Called
#: again with ``late=True`` after a UNIQUE failure: another file created one of these
#: references after this one was validated, so those rows become late rejections, or
#: existing rows where the invoice has the same content.
Create = Callable[[Connection, bool], int]
#: Given a chunk's rows (of :data:`BOUND_COLUMNS`) whose references an invoice has, the
#: invoice each is the same as (SPEC 13): ``line_number`` and ``invoice_number``, null
#: where the content differs. The rule is in ``rules/``; the caller passes it in.
Settle = Callable[[Connection, pl.DataFrame], pl.DataFrame]
#: Integer columns of ``invoices``, typed so when read into a frame.
INTEGER_COLUMNS = frozenset({"invoice_number", "file_id", "line_number", "amount"})


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _values(file_id: int, link_prefix: str, stamp: str, source: dict[str, str]) -> str:
    """The value of each of :data:`INSERT_COLUMNS`: ``source`` names where the bound
    columns come from; constants and derived columns are written in the SQL itself."""
    wants = f"',' || {source['notification_type']} || ','"
    values = {
        **source,
        "file_id": str(int(file_id)),
        "type": "'SINGLE'",
        "status": "'NEW'",
        "payment_link_url": f"{_literal(link_prefix)} || {source['token']}",
        "email_state": f"CASE WHEN instr({wants}, ',EMAIL,') > 0 THEN 'pending' END",
        "sms_state": f"CASE WHEN instr({wants}, ',SMS,') > 0 THEN 'pending' END",
        "created_at": _literal(stamp),
        "updated_at": _literal(stamp),
    }
    held = f"CASE WHEN instr({wants}, ',EMAIL,') > 0 THEN {held_until(file_id)!r} ELSE 0 END"
    return ", ".join([*(values[c] for c in INSERT_COLUMNS), held])


#: Beyond any real ``email_next_at``: see :func:`held_until`.
HELD = 1e15


def held_until(file_id: int) -> float:
    """``email_next_at`` of a customer email whose file is not processed yet. Its link is
    first told in the results file, and until then the invoice may still be undone (its
    work lost, the file validated again): :func:`release_emails` makes them due. One
    value per file, so releasing them is a range of the due-emails index."""
    return HELD + int(file_id)


_INTO = f"INSERT INTO invoices ({', '.join(INSERT_COLUMNS)}, email_next_at)"


def insert_sql(file_id: int, link_prefix: str, stamp: str) -> str:
    """The INSERT for one chunk's rows, bound one row at a time (``executemany``).

    ``link_prefix`` is what every payment link starts with (``worker.kinds.links``):
    the statement appends each row's token to it."""
    params = {name: f"?{n}" for n, name in enumerate(BOUND_COLUMNS, start=1)}
    return f"{_INTO} VALUES ({_values(file_id, link_prefix, stamp, params)})"


def insert_select_sql(file_id: int, link_prefix: str, stamp: str, table: str) -> str:
    """The INSERT for one chunk's rows, read from a staging ``table`` of BOUND_COLUMNS."""
    columns = {name: f'"{name}"' for name in BOUND_COLUMNS}
    return f"{_INTO} SELECT {_values(file_id, link_prefix, stamp, columns)} FROM {table}"


def _matching(conn: Connection, refs: list[str], columns: tuple[str, ...]) -> list[tuple]:
    """``columns`` of the invoices whose reference is one of ``refs``, once each."""
    refs = list(dict.fromkeys(refs))
    if not refs:
        return []
    unknown = set(columns) - {*INSERT_COLUMNS, "invoice_number"}
    if unknown:
        raise ValueError(f"not invoice columns: {sorted(unknown)}")
    picked = ", ".join(f"invoices.{c}" for c in columns)
    # Plain tuples: a resent file fetches a whole chunk's invoices, and building a
    # sqlite3.Row for each costs as much as the query.
    cursor = conn.cursor()
    cursor.row_factory = None
    if len(refs) <= IN_LIST_MAX:
        marks = ",".join("?" * len(refs))
        sql = f"SELECT {picked} FROM invoices WHERE merchant_reference IN ({marks})"
        return list(cursor.execute(sql, refs).fetchall())
    # One JSON array bound, each of its values looked up through the unique index: a
    # temporary table of the references wrote them all first (5 s for 100k, under load).
    sql = (
        f"SELECT {picked} FROM json_each(?) AS refs"
        " JOIN invoices ON invoices.merchant_reference = refs.value"
    )
    return list(cursor.execute(sql, (json.dumps(refs),)).fetchall())


def taken(conn: Connection, refs: list[str]) -> set[str]:
    """Which of ``refs`` an invoice already has (in the caller's transaction, if any)."""
    return {r[0] for r in _matching(conn, refs, ("merchant_reference",))}


def stored(conn: Connection, refs: list[str], fields: tuple[str, ...]) -> pl.DataFrame:
    """The invoices that have any of ``refs``, one query: ``merchant_reference``,
    ``invoice_number``, ``payment_link_url`` and ``fields``."""
    columns = ("merchant_reference", "invoice_number", "payment_link_url", *fields)
    schema = {c: pl.Int64 if c in INTEGER_COLUMNS else pl.String for c in columns}
    return pl.DataFrame(_matching(conn, refs, columns), schema=schema, orient="row")


def any_referenced(store: Store) -> bool:
    """Whether any invoice has a merchant reference: until one does, none is taken."""
    sql = "SELECT 1 FROM invoices WHERE merchant_reference IS NOT NULL LIMIT 1"
    return store.one(sql) is not None


_LATE = "INSERT OR IGNORE INTO late_rejections VALUES (?, ?, 'MERCHANT_REFERENCE_EXISTS')"
_EXISTING = "INSERT OR IGNORE INTO existing_rows VALUES (?, ?, ?)"


def _settle(conn: Connection, file_id: int, gone: pl.DataFrame, settle: Settle) -> None:
    """Record the rows whose reference was taken after validation: existing rows where
    the invoice is the same, late rejections where it is not."""
    same = settle(conn, gone)
    found = same.filter(pl.col("invoice_number").is_not_null())
    conn.executemany(_EXISTING, ((file_id, line, n) for line, n in found.iter_rows()))
    other = same.filter(pl.col("invoice_number").is_null())["line_number"]
    conn.executemany(_LATE, ((file_id, line) for line in other))


def record_existing(conn: Connection, file_id: int, rows: pl.DataFrame) -> None:
    """Record ``rows`` (``line_number``, ``invoice_number``): the file's rows that name an
    invoice with the same content, found when it was validated."""
    conn.executemany(_EXISTING, ((file_id, line, n) for line, n in rows.iter_rows()))


def bound(file_id: int, rows: pl.DataFrame, link_prefix: str, stamp: str, settle: Settle) -> Create:
    """Creates ``rows`` (of :data:`BOUND_COLUMNS`, in order) bound one row at a time."""
    insert = insert_sql(file_id, link_prefix, stamp)

    def create(conn: Connection, late: bool) -> int:
        todo = rows
        if late:
            gone_refs = list(taken(conn, rows["merchant_reference"].to_list()))
            gone = pl.col("merchant_reference").is_in(gone_refs)
            _settle(conn, file_id, rows.filter(gone), settle)
            todo = rows.filter(~gone)
        conn.executemany(insert, todo.iter_rows())
        return len(todo)

    return create


def staged(file_id: int, table: str, link_prefix: str, stamp: str, settle: Settle) -> Create:
    """Creates the rows of the attached staging ``table`` in one ``INSERT ... SELECT``."""
    insert = insert_select_sql(file_id, link_prefix, stamp, table)
    # A lookup per staged row through the unique index: IN (SELECT ...) would list
    # every reference of the table first, with the write lock held.
    exists = (
        "EXISTS (SELECT 1 FROM invoices AS i"
        f" WHERE i.merchant_reference = {table}.merchant_reference)"
    )

    def create(conn: Connection, late: bool) -> int:
        if not late:
            return int(conn.execute(insert).rowcount)
        picked = ", ".join(f'"{c}"' for c in BOUND_COLUMNS)
        rows = conn.execute(f"SELECT {picked} FROM {table} WHERE {exists}").fetchall()
        schema = {c: pl.Int64 if c in INTEGER_COLUMNS else pl.String for c in BOUND_COLUMNS}
        _settle(conn, file_id, pl.DataFrame(rows, schema=schema, orient="row"), settle)
        return int(conn.execute(f"{insert} WHERE NOT {exists}").rowcount)

    return create


def commit_chunk(
    store: Store, file_id: int, index: int, create: Create, existing: pl.DataFrame | None = None
) -> int | None:
    """Run ``create`` and mark the chunk done, in one transaction, with the chunk's
    ``existing`` rows (see :func:`record_existing`); None when it was done already
    (another delivery got there first). Returns the count created."""
    store.tune_for_bulk()
    with store.atomic() as conn:
        if chunks.is_done(conn, file_id, index):
            return None
        if existing is not None and not existing.is_empty():
            record_existing(conn, file_id, existing)
        conn.execute("SAVEPOINT bulk")
        try:
            created = create(conn, False)
        except store.integrity_errors:
            conn.execute("ROLLBACK TO bulk")
            created = create(conn, True)
        conn.execute("RELEASE bulk")
        chunks.mark_done(conn, file_id, index, created)
    return created


def release_emails(conn: Connection, file_id: int) -> int:
    """Make the file's held customer emails due, in the transaction that records it
    processed (its results are out); returns how many."""
    cursor = conn.execute(
        "UPDATE invoices SET email_next_at = 0 WHERE email_state = 'pending' AND email_next_at = ?",
        (held_until(file_id),),
    )
    return int(cursor.rowcount)


def late_rejections(store: Store, file_id: int) -> list[tuple[int, str]]:
    """``(line_number, code)`` of each of the file's rows rejected at processing."""
    rows = store.all("SELECT line_number, code FROM late_rejections WHERE file_id = ?", (file_id,))
    return [(int(r[0]), str(r[1])) for r in rows]


def late_rejection_count(store: Store, file_id: int) -> int:
    sql = "SELECT count(*) AS n FROM late_rejections WHERE file_id = ?"
    return int(store.row(sql, (file_id,))["n"])


def existing_rows(store: Store, file_id: int) -> pl.DataFrame:
    """The file's rows that name an invoice with the same content, recorded when their
    chunks were processed: ``line_number``, ``existing`` (its number), ``existing_link``."""
    rows = store.conn.execute(
        "SELECT e.line_number, e.invoice_number, i.payment_link_url FROM existing_rows AS e"
        " JOIN invoices AS i ON i.invoice_number = e.invoice_number WHERE e.file_id = ?",
        (file_id,),
    ).fetchall()
    schema = {"line_number": pl.UInt32, "existing": pl.Int64, "existing_link": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def existing_count(store: Store, file_id: int) -> int:
    sql = "SELECT count(*) AS n FROM existing_rows WHERE file_id = ?"
    return int(store.row(sql, (file_id,))["n"])


class Tally(NamedTuple):
    """A file's invoices in one currency: how many, their sum, and how many asked for
    an email and an SMS."""

    currency: str
    n: int
    total: int
    emails: int
    sms: int


def tallies(store: Store, file_id: int) -> list[Tally]:
    """The file's invoices per currency, in currency order."""
    rows = store.all(
        "SELECT currency, count(*) AS n, sum(amount) AS total, count(email_state) AS"
        " emails, count(sms_state) AS sms FROM invoices WHERE file_id = ?"
        " GROUP BY currency ORDER BY currency",
        (file_id,),
    )
    return [Tally(r["currency"], r["n"], r["total"], r["emails"], r["sms"]) for r in rows]
