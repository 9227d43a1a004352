"""The shared SQL as PostgreSQL receives it (worker/state/pgsql.py), and its rows."""

from __future__ import annotations

import pytest

from worker.state.pgsql import _row_class, translate


@pytest.mark.parametrize(
    ("sqlite", "postgresql", "json_params"),
    [
        (
            "SELECT * FROM files WHERE id = ? AND name = ?",
            "SELECT * FROM files WHERE id = $1 AND name = $2",
            (),
        ),
        ("VALUES (?2, ?1)", "VALUES ($2, $1)", ()),
        # A ? inside a literal, a quoted name or a comment is text, not a parameter
        (
            "SELECT '?', \"a?\" FROM t WHERE x = ? -- why?\n AND y = ?",
            "SELECT '?', \"a?\" FROM t WHERE x = $1 -- why?\n AND y = $2",
            (),
        ),
        ("SELECT 'it''s ?' WHERE a = ?", "SELECT 'it''s ?' WHERE a = $1", ()),
        (
            "INSERT OR IGNORE INTO refs VALUES (?)",
            "INSERT INTO refs VALUES ($1) ON CONFLICT DO NOTHING",
            (),
        ),
        (
            "INSERT OR IGNORE INTO t (a) VALUES (?) RETURNING id",
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id",
            (),
        ),
        (
            "UPDATE t SET a = ? WHERE n IN (SELECT value FROM json_each(?)) AND b = ?",
            "UPDATE t SET a = $1 WHERE n = ANY($2) AND b = $3",
            (1,),
        ),
        (
            "SELECT i.a FROM json_each(?) AS refs JOIN i ON i.r = refs.value",
            "SELECT i.a FROM json_array_elements_text($1::json) AS refs(value)"
            " JOIN i ON i.r = refs.value",
            (),
        ),
        (
            "UPDATE f SET o = NULL WHERE o IS ?",
            "UPDATE f SET o = NULL WHERE o IS NOT DISTINCT FROM $1",
            (),
        ),
        (
            "SELECT strftime('%Y', 'now') WHERE a % ? = 0",
            "SELECT strftime('%Y', 'now') WHERE a % $1 = 0",
            (),
        ),
    ],
)
def test_the_shared_sql_is_translated_for_postgresql(sqlite, postgresql, json_params):
    statement = translate(sqlite)
    assert statement.sql == postgresql
    assert statement.json_params == json_params


def test_a_row_is_read_by_name_by_position_and_as_a_dict_like_sqlite3_row():
    row = _row_class(("id", "name"))((7, "a.csv"))
    assert (row["id"], row[1], row["name"]) == (7, "a.csv", "a.csv")
    assert tuple(row) == (7, "a.csv") and len(row) == 2
    assert dict(row) == {"id": 7, "name": "a.csv"}
    assert row.keys() == ["id", "name"]
    assert isinstance(row, tuple) and row == (7, "a.csv")
