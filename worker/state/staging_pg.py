"""Big chunks reach PostgreSQL by ``COPY``: the rows into a temporary table of this
connection, then one ``INSERT ... SELECT`` into ``invoices``, as on SQLite
(:func:`worker.state.invoices.staged`).

The temporary table has no constraints: the INSERT meets ``invoices``' unique indexes,
so they still decide what two files both claim. polars writes the CSV (in Rust, off
the interpreter's lock); nothing loops over the rows in Python.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import polars as pl

from worker.state.pgsql import Connection

TABLE = "stage_rows"
#: COPY is fed in pieces of this many bytes (the CSV of a chunk may be tens of MB).
PIECE = 1 << 20


def _type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "BIGINT"
    if dtype.is_float():
        return "DOUBLE PRECISION"
    if dtype == pl.Boolean:
        return "BOOLEAN"
    return "TEXT"


@contextlib.contextmanager
def copied(conn: Connection, rows: pl.DataFrame) -> Iterator[str]:
    """``rows`` as the temporary table :data:`TABLE` for the block; yields its name."""
    columns = ", ".join(f'"{name}" {_type(dtype)}' for name, dtype in rows.schema.items())
    names = ", ".join(f'"{name}"' for name in rows.columns)
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(f"CREATE TEMPORARY TABLE {TABLE} ({columns})")
    try:
        # CSV as PostgreSQL reads it: an empty field is NULL, "" an empty text.
        data = rows.write_csv(include_header=False, quote_style="necessary").encode()
        with (
            conn.raw.cursor() as cur,
            cur.copy(f"COPY {TABLE} ({names}) FROM STDIN (FORMAT csv)") as copy,
        ):
            view = memoryview(data)
            for at in range(0, len(view), PIECE):
                copy.write(view[at : at + PIECE])
        yield TABLE
    finally:
        if not conn.closed:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
