"""The state database's one small interface: connections and transactions.

Every function of ``worker.state`` takes a :class:`Store` (or the connection of a
transaction it opened) and speaks SQL through it; nothing outside this package
does. ``sqlite.py`` and ``postgres.py`` implement it; the SQL is shared, written in
SQLite's dialect, and translated for PostgreSQL by ``pgsql.py``.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from worker.errors import StateError

if TYPE_CHECKING:
    import polars as pl

#: A DB-API connection of the backend, inside a transaction or for reads.
Connection = Any
Row = Any


#: A chunk's rows ready to be staged: in memory, or already in a file of the backend's.
Prepared = Any


class Store(abc.ABC):
    """The state database: one connection per thread, safe across processes."""

    #: What a statement raises when a unique (or other) constraint refuses it: callers
    #: catch these, never a driver's class by name.
    integrity_errors: ClassVar[tuple[type[Exception], ...]] = ()

    @abc.abstractmethod
    def open(self) -> Store:
        """Create the database if needed and apply pending migrations."""

    @abc.abstractmethod
    def initialised(self) -> bool:
        """Whether the database exists with its schema (asked without creating it)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close this thread's connection and let go of what the store holds."""

    @property
    @abc.abstractmethod
    def conn(self) -> Connection:
        """This thread's connection, in autocommit: for reads outside a transaction."""

    @abc.abstractmethod
    def atomic(self) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction; nested calls are savepoints inside the outer one.

        The outer transaction takes the write lock up front (a second writer waits
        rather than failing when it upgrades), as ``sqlite_utils.Database.atomic()``
        nests, but begins immediate."""

    # -- bulk loads -----------------------------------------------------------

    def prepare_stage(self, rows: pl.DataFrame, path: Path) -> Prepared:
        """Whatever of staging ``rows`` can be done ahead, outside any transaction (in
        a thread, while the last chunk commits); ``path`` is free for a file of its own."""
        return rows

    @abc.abstractmethod
    def stage(self, prepared: Prepared) -> contextlib.AbstractContextManager[str]:
        """The prepared rows as a table of this thread's connection for the block (enter
        it before ``atomic()``); yields the table's name."""

    def tune_for_bulk(self) -> None:  # noqa: B027 (most backends have nothing to tune)
        """Ready this thread's connection for a big write."""

    # -- reads, for the modules of this package ---------------------------

    def one(self, sql: str, params: Any = ()) -> Row | None:
        return self.conn.execute(sql, params).fetchone()

    def row(self, sql: str, params: Any = ()) -> Row:
        """The row of a query that always has one (an aggregate: count, sum)."""
        row = self.one(sql, params)
        if row is None:
            raise StateError(f"no row from: {sql}")
        return row

    def all(self, sql: str, params: Any = ()) -> list[Row]:
        return list(self.conn.execute(sql, params).fetchall())

    def value(self, sql: str, params: Any = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.one(sql, params)
        return None if row is None else row[0]


@contextlib.contextmanager
def savepoint(conn: Connection, depth: int) -> Iterator[Connection]:
    """A savepoint inside the caller's transaction: rolled back alone on error."""
    name = f"sp{depth}"
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield conn
    except BaseException:
        conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        conn.execute(f"RELEASE SAVEPOINT {name}")
        raise
    conn.execute(f"RELEASE SAVEPOINT {name}")
