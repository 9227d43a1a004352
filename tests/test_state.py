"""The state store's transactions and the typed file record."""

from __future__ import annotations

import pytest

from worker.errors import StateError
from worker.state import File, FileState, files


def test_a_nested_atomic_block_is_a_savepoint_rolled_back_alone(store):
    # Given a file, renamed in an outer transaction
    file_id = files.add(store, "a.csv", "/claimed/a.csv", "00", 1)
    with store.atomic() as conn:
        files.update(conn, file_id, kind="invoices")
        # When an inner block fails
        with pytest.raises(RuntimeError), store.atomic() as inner:
            files.update(inner, file_id, rows=99)
            raise RuntimeError("inner")
        # Then the outer one goes on and commits its own change only
    file = files.get(store, file_id)
    assert (file.kind, file.rows) == ("invoices", None)


def test_an_outer_failure_rolls_back_what_its_savepoints_released(store):
    file_id = files.add(store, "a.csv", "/claimed/a.csv", "00", 1)
    with pytest.raises(RuntimeError), store.atomic() as conn:
        with store.atomic() as inner:
            files.update(inner, file_id, rows=5)
        files.update(conn, file_id, kind="payments")
        raise RuntimeError("outer")
    file = files.get(store, file_id)
    assert (file.kind, file.rows) == (None, None)


def test_a_file_record_is_typed_and_its_state_an_enum(store):
    file_id = files.add(store, "a.csv", "/claimed/a.csv", "ab" * 32, 10)
    with store.atomic() as conn:
        files.transition(conn, file_id, FileState.VALIDATING)
    file = files.get(store, file_id)
    assert isinstance(file, File)
    assert file.state is FileState.VALIDATING and file.state == "validating"
    assert (file.name, file.size, file.final) == ("a.csv", 10, False)


def test_a_released_state_clears_the_lease_in_the_same_write(store):
    file_id = files.add(store, "a.csv", "/claimed/a.csv", "00", 1)
    with store.atomic() as conn:
        files.update(conn, file_id, lease_owner="h:1:x", lease_until=1e12)
        files.transition(conn, file_id, FileState.REJECTED)
    file = files.get(store, file_id)
    assert (file.lease_owner, file.lease_until, file.final) == (None, None, True)


def test_an_unknown_column_is_an_error_not_sql(store):
    file_id = files.add(store, "a.csv", "/claimed/a.csv", "00", 1)
    with pytest.raises(StateError, match="no column"), store.atomic() as conn:
        files.update(conn, file_id, **{"state = 'processed', name": "x"})
