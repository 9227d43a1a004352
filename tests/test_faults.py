"""Faults injected into the real parts: Redis lost, redelivery, a folder that cannot be
written, odd things dropped into the inbox, many writers on one state database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import cli, cli_env, invoice_csv, invoice_row, read_results
from test_restart import big_invoice_file, db, start, wait_for

from worker.errors import LeaseHeld
from worker.kinds import KINDS
from worker.pipeline import stages as pipeline
from worker.pipeline.runtime import Runtime
from worker.state import File, files, leases


def test_a_run_holding_the_lease_makes_a_redelivered_job_stand_back(settings, store):
    # Given a claimed file whose lease is held by a live run (this process)
    (settings.inbox / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    from worker.intake import claim

    file_id = claim.claim(settings, store, settings.inbox / "a.csv")
    rt = Runtime(settings=settings, store=store, kinds=KINDS)
    assert leases.take_file(store, file_id, f"{leases.HOST}:{os.getpid()}:first", 30, attempt=False)
    # When the message is delivered a second time
    with pytest.raises(LeaseHeld):
        pipeline.advance(rt, file_id)
    # Then the second run changed nothing, and goes ahead once the lease is released
    assert files.get(store, file_id).state == "received"
    leases.release_file(store, file_id, f"{leases.HOST}:{os.getpid()}:first")
    assert pipeline.advance(rt, file_id) == "processed"


def test_a_lease_held_by_a_dead_process_is_taken_over_at_once(settings, store):
    (settings.inbox / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    from worker.intake import claim

    file_id = claim.claim(settings, store, settings.inbox / "a.csv")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    assert leases.take_file(store, file_id, f"{leases.HOST}:{dead}:gone", 300, attempt=False)
    assert (
        pipeline.advance(Runtime(settings=settings, store=store, kinds=KINDS), file_id)
        == "processed"
    )


# Chunks of 200 rows are bound row by row; chunks of 1,000 go through staging files.
@pytest.mark.parametrize("chunk_rows", [200, 1000])
def test_concurrent_deliveries_of_one_file_create_each_invoice_once(settings, store, chunk_rows):
    (settings.inbox / "a.csv").write_text(invoice_csv([invoice_row(i) for i in range(1, 2001)]))
    from worker.intake import claim

    file_id = claim.claim(settings, store, settings.inbox / "a.csv")
    rt = Runtime(settings=settings.with_(chunk_rows=chunk_rows), store=store, kinds=KINDS)
    outcomes: list[str] = []

    def deliver() -> None:
        try:
            outcomes.append(pipeline.advance(rt, file_id))
        except LeaseHeld:
            outcomes.append("stood back")

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "processed" in outcomes
    assert store.one("SELECT count(*) AS n FROM invoices")["n"] == 2000


def test_an_outbox_that_cannot_be_written_holds_the_file_until_it_can(
    make_pipeline, settings, store
):
    # Given an outbox/ that is not a folder (root ignores permissions, so use a file)
    h = make_pipeline(settings.with_(scan_seconds=0.3, lease_seconds=1))
    shutil.rmtree(settings.outbox)
    settings.outbox.write_text("not a folder")
    h.drop("a.csv", invoice_csv([invoice_row(1)]))
    # When the file is processed
    wait_for(lambda: store.one("SELECT 1 FROM outbox WHERE kind = 'stalled'"), timeout=20)
    # Then it is not marked done, the original is kept, the administrators are told
    file = File.from_row(store.one("SELECT * FROM files"))
    assert file.state == "processing"
    assert Path(file.claimed_path).exists()
    # And it completes once the folder is back, with each invoice once
    settings.outbox.unlink()
    settings.outbox.mkdir()
    [file] = h.wait_final(timeout=60)
    assert file.state == "processed"
    assert len(read_results(settings.outbox / "a.csv.results.csv")) == 1
    assert store.one("SELECT count(*) AS n FROM invoices")["n"] == 1


def test_a_symlink_is_rejected_without_reading_its_target(pipeline, settings, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text(invoice_csv([invoice_row(1)]))
    os.symlink(secret, settings.inbox / "link.csv")
    [file] = pipeline.wait_final()
    assert file.state == "rejected"
    error = json.loads((settings.outbox / "link.csv.error.json").read_text())
    assert error["code"] == "UNREADABLE_FILE"
    assert (settings.rejected / "link.csv").is_symlink()
    assert secret.exists()


def test_a_fifo_is_rejected_without_blocking_the_worker(pipeline, settings):
    os.mkfifo(settings.inbox / "pipe.csv")
    pipeline.drop("after.csv", invoice_csv([invoice_row(1)]))
    files = pipeline.wait_final(2)
    assert sorted(f.state for f in files) == ["processed", "rejected"]
    assert json.loads((settings.outbox / "pipe.csv.error.json").read_text())["code"] == (
        "UNREADABLE_FILE"
    )


def test_a_file_deleted_before_its_claim_is_forgotten(pipeline, settings, store):
    (settings.inbox / "gone.csv").write_text("x")
    (settings.inbox / "gone.csv").unlink()
    pipeline.drop("a.csv", invoice_csv([invoice_row(1)]))
    [file] = pipeline.wait_final()
    assert file.name == "a.csv"


def test_redis_killed_and_its_data_lost_mid_run_loses_nothing(tmp_path):
    # Given a worker on a 100,000-row file, with its embedded Redis
    home = tmp_path
    (home / "inbox").mkdir()
    valid = big_invoice_file(home / "inbox" / "big.csv", 100_000)
    env = {"INVOICE_WORKER_CHUNK_ROWS": "10000"}
    worker = start(home, **env)
    wait_for(lambda: db(home).execute("SELECT count(*) FROM chunks").fetchone()[0] >= 1)
    # When Redis is killed and its data deleted, and the worker with it
    pid = int((home / "var" / "redis" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    for aof in (home / "var" / "redis").glob("appendonly*"):
        aof.unlink()
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    # Then a restart reconciles from SQLite and finishes, each invoice once
    done = cli("run", "--once", home=home, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    conn = db(home)
    assert conn.execute("SELECT state FROM files").fetchone()[0] == "processed"
    counts = conn.execute("SELECT count(DISTINCT merchant_reference), count(*) FROM invoices")
    assert tuple(counts.fetchone()) == (valid, valid)


@pytest.mark.parametrize("workers", [2, 4])
def test_several_worker_processes_share_one_home_without_lock_errors(tmp_path, workers):
    # Given a watcher and several worker processes on one home and one embedded Redis
    home = tmp_path
    (home / "inbox").mkdir()
    env = cli_env(home, INVOICE_WORKER_CHUNK_ROWS="500", INVOICE_WORKER_WORKER_THREADS="2")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "watch"],
            env=env,
            cwd=home,
            stderr=subprocess.PIPE,
            text=True,
        )
    ]
    wait_for(lambda: (home / "var" / "redis" / "url").exists())
    procs += [
        subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker"],
            env=env,
            cwd=home,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    try:
        # When twelve files of 2,000 rows are dropped at once
        for f in range(12):
            rows = [invoice_row(f * 10_000 + i) for i in range(2000)]
            (home / "inbox" / f".f{f}.tmp").write_text(invoice_csv(rows))
        for f in range(12):
            os.rename(home / "inbox" / f".f{f}.tmp", home / "inbox" / f"f{f}.csv")

        def all_done() -> bool:
            states = [r[0] for r in db(home).execute("SELECT state FROM files")]
            return len(states) == 12 and set(states) == {"processed"}

        wait_for(all_done, timeout=120, every=0.2)
    finally:
        # The workers first: the watcher started the embedded Redis and stops it as it
        # exits, and a worker still letting go of its jobs would then log the refused
        # connection (seen under load in CI).
        for p in procs[1:]:
            p.send_signal(signal.SIGTERM)
        workers_logs = [p.communicate(timeout=60)[1] for p in procs[1:]]
        procs[0].send_signal(signal.SIGTERM)
        logs = procs[0].communicate(timeout=60)[1] + "".join(workers_logs)
    # Then every invoice exists once and no writer hit a lock error
    assert db(home).execute("SELECT count(*) FROM invoices").fetchone()[0] == 24_000
    assert "database is locked" not in logs
    assert "Traceback" not in logs


def test_sigterm_during_a_large_file_leaves_nothing_unfinished_after_the_next_start(tmp_path):
    home = tmp_path
    (home / "inbox").mkdir()
    valid = big_invoice_file(home / "inbox" / "big.csv", 200_000)
    env = {"INVOICE_WORKER_CHUNK_ROWS": "20000"}
    worker = start(home, **env)
    wait_for(lambda: db(home).execute("SELECT count(*) FROM chunks").fetchone()[0] >= 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    done = cli("run", "--once", home=home, **env)
    assert done.returncode == 0
    conn = db(home)
    assert conn.execute("SELECT state FROM files").fetchone()[0] == "processed"
    assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == valid


def test_many_files_dropped_at_once_are_all_answered(pipeline, settings):
    # Far more files than one tick claims, arriving faster than events are read.
    for i in range(300):
        (settings.inbox / f".{i}.tmp").write_text(invoice_csv([invoice_row(i)]))
    for i in range(300):
        os.rename(settings.inbox / f".{i}.tmp", settings.inbox / f"f{i:04d}.csv")
    files = pipeline.wait_final(300, timeout=120)
    assert {f.state for f in files} == {"processed"}
    assert len(list(settings.outbox.glob("*.results.csv"))) == 300
    time.sleep(0.1)


def test_a_rejection_cut_short_by_a_crash_is_finished_with_its_own_code(settings, store):
    # Given a duplicate whose rejection recorded its code and moved the original,
    # then crashed before the rejection was committed as final
    from worker.intake import claim

    rt = Runtime(settings=settings, store=store, kinds=KINDS)
    content = invoice_csv([invoice_row(1)])
    (settings.inbox / "a.csv").write_text(content)
    assert pipeline.advance(rt, claim.claim(settings, store, settings.inbox / "a.csv")) == (
        "processed"
    )
    (settings.inbox / "b.csv").write_text(content)
    file_id = claim.claim(settings, store, settings.inbox / "b.csv")
    claimed = Path(files.get(store, file_id).claimed_path)
    with store.atomic() as conn:
        files.update(
            conn,
            file_id,
            error_code="DUPLICATE_FILE",
            error_message="same content as file 1 (a.csv)",
            final_path=str(settings.rejected / "b.csv"),
        )
    claimed.rename(settings.rejected / "b.csv")
    # When the job runs again after the restart
    assert pipeline.advance(rt, file_id) == "rejected"
    # Then the file is rejected as what it was, not as a file that disappeared
    file = files.get(store, file_id)
    assert (file.state, file.error_code) == ("rejected", "DUPLICATE_FILE")
    error = json.loads((settings.outbox / f"{file.result_name}.error.json").read_text())
    assert error["code"] == "DUPLICATE_FILE"
    assert (settings.rejected / "b.csv").read_text() == content
