"""A host dies mid-file and its var/ with it (SPEC 14): the file is finished from its
claimed original by the next worker, with nothing made twice and nothing lost.

One host here is the real worker process, killed with SIGKILL; its ``var/work/`` is then
deleted, as if it had been another machine's local disk, and a worker started again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from helpers import (
    big_invoice_file,
    cli,
    create_invoices,
    db,
    invoice_row,
    payment_csv,
    payment_row,
    run_file,
    start,
    wait_for,
)

from notifications.transport import EmlFolder
from worker.delivery import customers as invoice_mail
from worker.errors import StateError
from worker.state import File, remade

CHUNK_ROWS = {"INVOICE_WORKER_CHUNK_ROWS": "20000"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path


@pytest.fixture(autouse=True)
def no_redis_left(tmp_path: Path) -> Iterator[None]:
    """A worker killed with SIGKILL leaves its embedded redis-server for the next start to
    adopt; a test that starts none stops it, or it outlives the suite."""
    yield
    for pid_file in tmp_path.rglob("var/redis/redis.pid"):
        pid = int(pid_file.read_text().strip())
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cwd").resolve() == pid_file.parent.resolve():
                os.kill(pid, signal.SIGTERM)


def kill_when(home: Path, reached, **env: str) -> None:
    worker = start(home, **env)
    wait_for(reached, timeout=120)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)


def lose_work(home: Path) -> None:
    work = home / "var" / "work"
    assert any(work.rglob("chunk-*.arrow")), "the kill came before any chunk was kept"
    shutil.rmtree(work)


def test_an_invoice_file_whose_host_died_mid_way_is_made_again_once_from_its_original(home):
    # Given a 200,000-row file, killed with some of its chunks committed
    rows = 200_000
    valid = big_invoice_file(home / "inbox" / "big.csv", rows)
    kill_when(
        home,
        lambda: 2 <= db(home).execute("SELECT count(*) FROM chunks").fetchone()[0] < 10,
        **CHUNK_ROWS,
    )
    assert db(home).execute("SELECT count(*) FROM invoices").fetchone()[0] > 0

    # When its work is lost with its host, and another worker takes the file over
    lose_work(home)
    done = cli("run", "--once", home=home, **CHUNK_ROWS)
    assert done.returncode == 0, done.stderr[-2000:]

    # Then every valid row is an invoice exactly once
    assert "file.work_lost" in done.stderr
    conn = db(home)
    file = File.from_row(conn.execute("SELECT * FROM files").fetchone())
    assert (file.state, file.valid, file.created) == ("processed", valid, valid)
    count, distinct = conn.execute(
        "SELECT count(*), count(DISTINCT merchant_reference) FROM invoices"
    ).fetchone()
    assert count == distinct == valid
    # And the results give each row the invoice and link the state holds, none other
    results = pl.read_csv(home / "outbox" / "big.csv.results.csv", infer_schema=False)
    assert results.height == rows
    created = results.filter(pl.col("status") == "CREATED").select(
        pl.col("invoice_number").cast(pl.Int64), "payment_link_url"
    )
    stored = pl.DataFrame(
        conn.execute("SELECT invoice_number, payment_link_url FROM invoices").fetchall(),
        schema=["invoice_number", "payment_link_url"],
        orient="row",
    )
    assert created.height == valid
    assert created.sort("invoice_number").equals(stored.sort("invoice_number"))
    assert (home / "archive" / "big.csv").exists()


def test_a_payment_file_whose_host_died_mid_way_pays_each_invoice_once_and_reports_every_row(
    home,
):
    # Given 30,000 invoices, and a file paying each of them, in chunks of 1,000
    n = 30_000
    big_invoice_file(home / "inbox" / "invoices.csv", n, bad_every=n + 1)
    first = cli("run", "--once", home=home)
    assert first.returncode == 0, first.stderr[-2000:]
    numbers = [r[0] for r in db(home).execute("SELECT invoice_number FROM invoices ORDER BY 1")]
    amounts = dict(db(home).execute("SELECT invoice_number, amount FROM invoices").fetchall())
    payments = [payment_row(f"PAY-{i}", num, amounts[num]) for i, num in enumerate(numbers)]
    (home / "inbox" / "payments.csv").write_text(payment_csv(payments), "utf-8")
    env = {"INVOICE_WORKER_CHUNK_ROWS": "1000"}

    # When the worker is killed with some of its chunks applied, and its work lost
    def some_applied() -> bool:
        return 2 <= db(home).execute("SELECT count(*) FROM payments").fetchone()[0] // 1000 < 25

    kill_when(home, some_applied, **env)
    lose_work(home)
    done = cli("run", "--once", home=home, **env)
    assert done.returncode == 0, done.stderr[-2000:]

    # Then each invoice is paid once, by its own row
    conn = db(home)
    paid, distinct = conn.execute(
        "SELECT count(*), count(DISTINCT invoice_number) FROM payments"
    ).fetchone()
    assert paid == distinct == n
    assert conn.execute("SELECT count(*) FROM invoices WHERE status = 'PAID'").fetchone()[0] == n
    # And the results tell every row as applied, those of the lost host's chunks included
    results = pl.read_csv(home / "outbox" / "payments.csv.results.csv", infer_schema=False)
    assert results.height == n
    assert results["status"].unique().to_list() == ["APPLIED"]
    assert sorted(results["line_number"].cast(pl.Int64).to_list()) == list(range(2, n + 2))


def test_customers_of_a_file_still_processing_get_no_email_until_its_results_are_out(
    settings, store
):
    # Given a file of emailed invoices, killed with some of its chunks committed
    home = settings.home
    big_invoice_file(home / "inbox" / "big.csv", 40_000, notification_type="EMAIL")
    kill_when(
        home,
        lambda: 2 <= store.value("SELECT count(*) FROM chunks") < 10,
        INVOICE_WORKER_CHUNK_ROWS="4000",
    )
    made = store.value("SELECT count(*) FROM invoices WHERE email_state = 'pending'")
    assert made >= 2 * 4000 * 0.99
    assert store.value("SELECT state FROM files") == "processing"

    # When a sender runs before the file is processed (its work may yet be lost, and its
    # invoices undone)
    run = invoice_mail.deliver(store, EmlFolder(settings.mail), settings.with_(mail_rate=0))

    # Then it sends none of them, and none is due
    assert run is None or run.sent == 0
    assert not list(settings.mail.glob("invoice-*.eml"))
    assert not invoice_mail.due(store)
    pending = "SELECT count(*) FROM invoices WHERE email_state = 'pending'"
    assert store.value(pending) == made


def test_the_invoices_of_lost_work_are_undone_with_their_done_marks(pipeline, store):
    # Given a file's invoices, none paid
    numbers = create_invoices(pipeline, [invoice_row(n) for n in range(1, 4)])
    file_id = store.value("SELECT file_id FROM invoices WHERE invoice_number = ?", (numbers[0],))

    # When its work is lost and it is made again
    with store.atomic() as conn:
        undone = remade.forget_invoices(conn, file_id)

    # Then its invoices and done marks are gone, and nothing else
    assert undone == 3
    assert store.value("SELECT count(*) FROM invoices WHERE file_id = ?", (file_id,)) == 0
    assert store.value("SELECT count(*) FROM chunks WHERE file_id = ?", (file_id,)) == 0


def test_lost_work_whose_invoices_were_paid_since_is_kept_for_an_administrator(pipeline, store):
    # Given a file's invoices, one of them paid by a payment file
    numbers = create_invoices(pipeline, [invoice_row(n) for n in range(1, 4)])
    file_id = store.value("SELECT file_id FROM invoices WHERE invoice_number = ?", (numbers[0],))
    run_file(pipeline, "pay.csv", payment_csv([payment_row("PAY-1", numbers[0], 10000)]))
    assert store.value("SELECT status FROM invoices WHERE invoice_number = ?", (numbers[0],)) == (
        "PAID"
    )

    # When its work is said lost, then its invoices are kept, and the error says why
    with pytest.raises(StateError, match="paid or cancelled"), store.atomic() as conn:
        remade.forget_invoices(conn, file_id)
    assert store.value("SELECT count(*) FROM invoices WHERE file_id = ?", (file_id,)) == 3
