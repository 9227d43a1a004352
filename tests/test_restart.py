"""Crash and restart with the real process: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import polars as pl
import pytest
from helpers import (
    big_invoice_file,
    cli,
    db,
    invoice_csv,
    invoice_row,
    read_results,
    start,
    wait_for,
)

from worker.state import File


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path


def test_a_file_dropped_while_nothing_runs_is_processed_at_the_next_start(home):
    (home / "inbox" / "overnight.csv").write_text(invoice_csv([invoice_row(1)]))
    done = cli("run", "--once", home=home)
    assert done.returncode == 0, done.stderr
    assert (home / "archive" / "overnight.csv").exists()
    assert len(read_results(home / "outbox" / "overnight.csv.results.csv")) == 1
    assert len(list((home / "mail").glob("*.eml"))) == 2


def test_a_file_dropped_twice_across_runs_is_a_duplicate(home):
    content = invoice_csv([invoice_row(1)])
    (home / "inbox" / "a.csv").write_text(content)
    assert cli("run", "--once", home=home).returncode == 0
    (home / "inbox" / "a.csv").write_text(content)
    assert cli("run", "--once", home=home).returncode == 0
    # The second file's result gets a distinct name: the first one's stays.
    assert (home / "outbox" / "a.csv.results.csv").exists()
    error = json.loads((home / "outbox" / "a.csv.2.error.json").read_text())
    assert error["code"] == "DUPLICATE_FILE"
    assert db(home).execute("SELECT count(*) FROM invoices").fetchone()[0] == 1


@pytest.mark.parametrize("moment", ["validating", "processing"])
def test_sigkill_in_the_middle_of_a_large_file_then_run_once_creates_each_invoice_once(
    home, moment
):
    # Given a 200,000-row file and a worker processing it in chunks of 20,000
    rows = 200_000
    valid = big_invoice_file(home / "inbox" / "big.csv", rows)
    env = {"INVOICE_WORKER_CHUNK_ROWS": "20000"}
    worker = start(home, **env)

    # When the worker is killed with SIGKILL mid-way
    def reached() -> bool:
        conn = db(home)
        if moment == "validating":
            row = conn.execute("SELECT state FROM files").fetchone()
            return bool(row and row["state"] == "validating")
        done = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return 2 <= done < 10

    wait_for(reached)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    # A kill leaves at most the staging files of the chunk in hand and the one ahead
    assert len(list((home / "var").rglob("*.stage.db"))) <= 2
    conn = db(home)
    state = conn.execute("SELECT state FROM files").fetchone()["state"]
    assert state not in ("processed", "rejected")

    # Then a restart finishes the file, and every valid row exists exactly once
    done = cli("run", "--once", home=home, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    conn = db(home)
    file = File.from_row(conn.execute("SELECT * FROM files").fetchone())
    assert file.state == "processed"
    assert (file.valid, file.created) == (valid, valid)
    count, distinct = conn.execute(
        "SELECT count(*), count(DISTINCT merchant_reference) FROM invoices"
    ).fetchone()
    assert count == distinct == valid
    results = pl.read_csv(home / "outbox" / "big.csv.results.csv", infer_schema=False)
    assert results.height == rows
    assert results["line_number"].cast(pl.Int64).to_list() == list(range(2, rows + 2))
    assert (results["status"] == "CREATED").sum() == valid
    assert (home / "archive" / "big.csv").exists()
    assert not list((home / "inbox").glob("*.csv"))


def test_sigterm_stops_the_worker_and_its_embedded_redis_cleanly(home):
    worker = start(home)
    url = wait_for(lambda: (home / "var" / "redis" / "url").exists())
    assert url
    pid = int((home / "var" / "redis" / "redis.pid").read_text())
    (home / "inbox" / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    wait_for(lambda: (home / "outbox" / "a.csv.results.csv").exists())
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert "worker.stopped" in worker.stderr.read()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_for(gone, timeout=10)


def test_a_redis_server_orphaned_before_its_url_was_written_is_stopped(tmp_path):
    # Given an embedded server whose starter was killed before it wrote the URL
    from worker.service.redis import EmbeddedRedis, _answers

    first = EmbeddedRedis(tmp_path).start()
    old_url = first.url
    (tmp_path / "redis" / "url").unlink()
    (tmp_path / "redis" / "owner").unlink()
    # When the next process starts
    second = EmbeddedRedis(tmp_path).start()
    try:
        # Then the orphan is gone (nobody could have reached or stopped it), and one
        # server answers at the URL written
        assert first._process.wait(10) == -signal.SIGKILL
        assert not _answers(old_url)
        assert second.pid != first.pid and _answers(second.url)
        assert (tmp_path / "redis" / "url").read_text() == second.url
    finally:
        second.stop()
        first._process.kill()  # had the test failed, no orphan outlives it
        first._process.wait(10)
