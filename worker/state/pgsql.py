"""PostgreSQL's side of the shared SQL: the package's queries are written once, for
SQLite's DB-API (``?`` parameters, ``INSERT OR IGNORE``, ``json_each(?)`` lists), and
translated here, once per distinct statement, for psycopg.

- ``?`` and ``?N`` become ``$N``: psycopg's raw cursor sends them to the server as
  they are, so a ``%`` in the SQL means nothing special.
- ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING``.
- ``x IN (SELECT value FROM json_each(?))`` becomes ``x = ANY($N)``, its parameter (a
  JSON list) bound as an array of the column's type: ``json_each`` yields text, and an
  ``invoice_number`` compared with text would miss its index.
- ``json_each(?) AS t`` (a table of the list's values) becomes
  ``json_array_elements_text($N::json) AS t(value)``: its values are text, as the
  references joined that way are.
- ``x IS ?`` (equal, NULLs included) becomes ``IS NOT DISTINCT FROM``.

Rows read by name and by index, as ``sqlite3.Row`` does.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

import psycopg
import psycopg.rows
from psycopg.adapt import Loader

#: Marks a ``json_each`` parameter while the statement is scanned (never in real SQL).
_JSON_MARK = "\x00"
_JSON_IN = re.compile(r"\bIN\s*\(\s*SELECT\s+value\s+FROM\s+json_each\(\s*\?\s*\)\s*\)", re.I)
_JSON_TABLE = re.compile(r"\bjson_each\(\s*\?\s*\)\s+AS\s+(\w+)", re.I)
_IS_PARAM = re.compile(r"\bIS\s+\?", re.I)
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.I)
_RETURNING = re.compile(r"\bRETURNING\b", re.I)


class Statement(NamedTuple):
    """A statement translated: its SQL, and which parameters are JSON lists."""

    sql: str
    json_params: tuple[int, ...]


def _outside_strings(sql: str) -> Iterator[tuple[bool, str]]:
    """The statement in pieces: (True, code) or (False, a quoted literal or comment)."""
    pattern = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*")
    at = 0
    for match in pattern.finditer(sql):
        yield True, sql[at : match.start()]
        yield False, match.group()
        at = match.end()
    yield True, sql[at:]


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> Statement:
    """``sql`` (SQLite's dialect, as the package writes it) for PostgreSQL."""
    out: list[str] = []
    json_params: list[int] = []
    count = 0
    for code, piece in _outside_strings(sql):
        if not code:
            out.append(piece)
            continue
        piece = _JSON_IN.sub(lambda _: "= ANY(" + _JSON_MARK + ")", piece)
        piece = _JSON_TABLE.sub(r"json_array_elements_text(?::json) AS \1(value)", piece)
        piece = _IS_PARAM.sub("IS NOT DISTINCT FROM ?", piece)

        def number(match: re.Match[str]) -> str:
            nonlocal count
            if match.group(2):
                return f"${match.group(2)}"
            count += 1
            if match.group(1) == _JSON_MARK:
                json_params.append(count - 1)
            return f"${count}"

        out.append(re.sub(r"(\?|\x00)(\d*)", number, piece))
    text = "".join(out)
    if _OR_IGNORE.match(text):
        text = _OR_IGNORE.sub("INSERT INTO", text, count=1)
        returning = _RETURNING.search(text)
        if returning:
            at = returning.start()
            text = f"{text[:at]}ON CONFLICT DO NOTHING {text[at:]}"
        else:
            text = f"{text.rstrip().rstrip(';')} ON CONFLICT DO NOTHING"
    return Statement(text, tuple(json_params))


def _bind(statement: Statement, params: Any) -> Any:
    if not statement.json_params or params is None:
        return params
    values = list(params)
    for index in statement.json_params:
        values[index] = json.loads(values[index])
    return values


class Row(tuple[Any, ...]):
    """A result row, read by column name or by position, like ``sqlite3.Row``; a tuple,
    so whatever takes rows as sequences (polars) takes it. Each query's columns make a
    subclass that holds their names (:func:`_row_class`)."""

    __slots__ = ()
    _names: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self, strict=True))!r})"


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_names": {n: i for i, n in enumerate(names)}})


def row_factory(cursor: Any) -> Any:
    cls = _row_class(tuple(column.name for column in cursor.description or ()))
    return cls


class _WholeNumeric(Loader):
    """``numeric`` as int when whole: the package's numbers are integers, and a
    ``sum()`` of a bigint column is a numeric on PostgreSQL (SQLite answers an int)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        value = Decimal(text)
        return int(value) if value == value.to_integral_value() else float(value)


class Cursor:
    """A cursor that takes the package's SQL; ``row_factory = None`` reads plain tuples,
    as it does on ``sqlite3``."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.row_factory: Any = row_factory

    def _cursor(self) -> psycopg.Cursor[Any]:
        return self.raw.cursor(row_factory=self.row_factory or psycopg.rows.tuple_row)

    def execute(self, sql: str, params: Any = None) -> psycopg.Cursor[Any]:
        statement = translate(sql)
        cursor = self._cursor()
        cursor.execute(statement.sql, _bind(statement, params) if params else None)
        return cursor

    def executemany(self, sql: str, params: Iterable[Any]) -> psycopg.Cursor[Any]:
        statement = translate(sql)
        cursor = self._cursor()
        cursor.executemany(statement.sql, (_bind(statement, p) for p in params))
        return cursor


class Connection:
    """A psycopg connection that takes the package's SQL (see the module's docstring)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Any = None) -> psycopg.Cursor[Any]:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, params: Iterable[Any]) -> psycopg.Cursor[Any]:
        return self.cursor().executemany(sql, params)

    def cursor(self) -> Cursor:
        return Cursor(self.raw)

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)


def open_connection(url: str, **kwargs: Any) -> Connection:
    """A new connection to ``url``, in autocommit (``atomic()`` opens transactions)."""
    raw = psycopg.connect(
        url,
        autocommit=True,
        cursor_factory=psycopg.RawCursor,
        row_factory=row_factory,
        **kwargs,
    )
    raw.adapters.register_loader("numeric", _WholeNumeric)
    return Connection(raw)
