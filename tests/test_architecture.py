"""The layout's promises: SQL in one package, kinds in one registry."""

from __future__ import annotations

import re
from pathlib import Path

from worker.kinds import KINDS
from worker.pipeline.kind import FileKind

ROOT = Path(__file__).resolve().parent.parent
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|CREATE\s+(TABLE|INDEX|VIEW)|ATTACH\s+DATABASE|PRAGMA\s)"
)


def test_no_module_outside_the_state_package_contains_sql():
    # Given every module of the product but worker/state/
    modules = [
        p
        for package in ("worker", "notifications", "rules")
        for p in (ROOT / package).rglob("*.py")
        if not p.is_relative_to(ROOT / "worker" / "state")
    ]
    # When each is searched for SQL
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in modules
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        if SQL.search(line)
    ]
    # Then none holds any
    assert found == []


def test_the_sql_finder_finds_sql():
    assert SQL.search('"SELECT id FROM files WHERE id = ?"')
    assert SQL.search("INSERT OR IGNORE INTO outbox (key) VALUES (?)")
    # SQL here is written in capitals: prose about selecting rows from a file is not SQL.
    assert not SQL.search("select the rows from the file")


def test_every_kind_in_the_registry_is_a_file_kind_with_a_name_a_header_and_a_template():
    names = [kind.name for kind in KINDS]
    assert names == ["cancellations", "invoices", "batches", "payments"]
    for kind in KINDS:
        assert isinstance(kind, FileKind)
        assert kind.signature.kind == kind.name
        assert set(kind.signature.required) <= set(kind.template(_expiry())[0])


def _expiry():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=30)
