"""The state store's transactions and the typed file record."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from worker.errors import LeaseHeld, StateError
from worker.state import File, FileState, files, invoices
from worker.state.leases import Lease

pytestmark = pytest.mark.backends


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


def test_a_lease_outlives_its_length_while_its_process_lives(store):
    # Given a run holding a file's 2 s lease through one long step that never renews
    # (the heartbeat beats every 0.25 s: only a stall of 1.5 s could let the lease go)
    file_id = files.add(store, "big.csv", "/claimed/big.csv", "00", 1)
    lease = Lease(store, file_id, seconds=2.0)
    lease.take()
    time.sleep(5)
    # Then another run still cannot take it: the process's heartbeat kept it
    with pytest.raises(LeaseHeld):
        Lease(store, file_id, seconds=2.0).take()
    lease.renew()
    lease.release()
    assert files.get(store, file_id).lease_owner is None


def test_a_run_whose_lease_was_taken_from_it_is_told_at_its_next_renewal(store):
    file_id = files.add(store, "a.csv", "/claimed/a.csv", "00", 1)
    lease = Lease(store, file_id, seconds=0.8)
    lease.take()
    # When another owner takes the file over (as after this process stalled past it)
    with store.atomic() as conn:
        files.update(conn, file_id, lease_owner="elsewhere:1:x", lease_until=time.time() + 60)
    deadline = time.monotonic() + 5
    while not lease.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    # Then its next renewal stops it, and the new owner keeps the file
    with pytest.raises(LeaseHeld, match="lost"):
        lease.renew()
    assert files.get(store, file_id).lease_owner == "elsewhere:1:x"


def test_the_references_already_invoiced_are_found_among_a_few_and_among_thousands(store):
    # Given invoices for every other reference up to 700
    with store.atomic() as conn:
        conn.executemany(
            "INSERT INTO invoices (invoice_number, merchant_reference, file_id, type, status,"
            " amount, currency, token, payment_link_url, created_at, updated_at)"
            " VALUES (?, ?, 1, 'SINGLE', 'NEW', 100, 'USD', ?, 'x', 'x', 'x')",
            [(n, f"REF-{n}", f"tok{n}") for n in range(1, 701, 2)],
        )
    refs = [f"REF-{n}" for n in range(1, 2001)]
    # Then a few references are looked up in a list, thousands at once, none at all
    assert invoices.taken(store.conn, refs[:6]) == {"REF-1", "REF-3", "REF-5"}
    assert invoices.taken(store.conn, refs) == {f"REF-{n}" for n in range(1, 701, 2)}
    assert invoices.taken(store.conn, []) == set()


def test_threads_that_ended_leave_no_postgresql_connection_open(database_url_factory):
    # Given a PostgreSQL store read from 20 threads in turn, each gone after its read
    # (as a /metrics request's thread is)
    from worker.state.postgres import PostgresStore

    store = PostgresStore(database_url_factory()).open()
    for _ in range(20):
        thread = threading.Thread(target=store.value, args=("SELECT 1",))
        thread.start()
        thread.join()
    gc.collect()
    # Then only this thread's connection is left
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    deadline = time.monotonic() + 5
    while store.value(sql) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.value(sql) == 1
    store.close()
