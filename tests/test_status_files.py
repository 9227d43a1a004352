"""Status files: the invoices whose status changed, one file per interval, each change once."""

from __future__ import annotations

import calendar
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import (
    cli,
    cli_env,
    create_invoices,
    invoice_csv,
    invoice_row,
    payment_csv,
    payment_row,
    read_results,
    run_file,
)

from worker.delivery.status import StatusWriter
from worker.errors import ConfigError
from worker.settings import load
from worker.state import status

pytestmark = pytest.mark.backends

#: 2027-01-15 08:00:00 UTC, the writer's clock in the tests that turn it by hand.
T0 = float(calendar.timegm((2027, 1, 15, 8, 0, 0)))


def pay(h, name: str, *payments: tuple[str, int]) -> None:
    rows = [payment_row(ref, number, 10000) for ref, number in payments]
    file = run_file(h, name, payment_csv(rows))
    assert file.state == "processed" and file.created == len(rows), file


def status_files(outbox: Path) -> list[Path]:
    return sorted(outbox.glob("invoice-status-*.csv"))


def test_payments_make_one_status_file_per_interval_with_exactly_the_changes(
    make_pipeline, settings, store
):
    # Given status files every hour, and three invoices made through the pipeline
    s = settings.with_(status_files=True, status_file_seconds=3600)
    h = make_pipeline(s)
    one, two, three = create_invoices(h, [invoice_row(1), invoice_row(2), invoice_row(3)])
    clock = [T0]
    writer = StatusWriter(s, store, clock=lambda: clock[0])
    # When nothing has changed yet, no file is written
    assert writer.step(now=True) == []
    # When the first invoice is paid
    pay(h, "pay-1.csv", ("PAY-1", one))
    [first] = writer.step(now=True)
    # Then one file, named for the time, lists exactly that change
    assert first.name == "invoice-status-20270115T080000Z.csv"
    [row] = read_results(first)
    assert list(row) == list(status.COLUMNS)
    assert row["invoice_number"] == str(one)
    assert (row["merchant_reference"], row["type"], row["status"]) == (
        "REF-000001",
        "SINGLE",
        "PAID",
    )
    assert (row["amount"], row["currency"], row["payment_reference"]) == ("10000", "USD", "PAY-1")
    assert row["changed_at"].endswith("Z") and row["batch_number"] == ""
    # When the others are paid within the hour, no second file is written yet
    pay(h, "pay-2.csv", ("PAY-2", two), ("PAY-3", three))
    clock[0] += 3599
    assert writer.step(now=True) == []
    # Once the hour has passed, the second file lists those two and not the first
    clock[0] += 1
    [second] = writer.step(now=True)
    listed = read_results(second)
    assert [r["invoice_number"] for r in listed] == [str(two), str(three)]
    assert [r["payment_reference"] for r in listed] == ["PAY-2", "PAY-3"]
    # And an hour later with nothing changed, none
    clock[0] += 3600
    assert writer.step(now=True) == []
    assert status_files(s.outbox) == [first, second]


def test_no_status_file_is_written_when_the_setting_is_off(pipeline, settings, store):
    [number] = create_invoices(pipeline, [invoice_row(1)])
    pay(pipeline, "pay.csv", ("PAY-1", number))
    assert StatusWriter(settings, store).step(now=True) == []
    assert status_files(settings.outbox) == []


KILL_AFTER_RECORDING = textwrap.dedent(
    """
    import os, signal, time
    from worker import settings, state
    from worker.delivery.status import name_at
    from worker.state import status
    s = settings.load()
    recorded = status.record(state.connect(s), name_at, time.time(), 0)
    print(recorded.name, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def paid_in(files: list[Path]) -> list[str]:
    return sorted(r["invoice_number"] for f in files for r in read_results(f))


def test_a_status_file_recorded_then_killed_before_it_was_written_is_written_at_restart(
    settings, store
):
    home = settings.home
    on = {"INVOICE_WORKER_STATUS_FILES": "true", "INVOICE_WORKER_STATUS_FILE_SECONDS": "1"}
    # Given two invoices paid by a real worker (status files off: the changes are kept)
    (settings.inbox / "march.csv").write_text(invoice_csv([invoice_row(1), invoice_row(2)]))
    assert cli("run", "--once", home=home).returncode == 0
    one, two = (r[0] for r in store.all("SELECT invoice_number FROM invoices ORDER BY 1"))
    (settings.inbox / "pay-1.csv").write_text(payment_csv([payment_row("PAY-1", one, 10000)]))
    assert cli("run", "--once", home=home).returncode == 0
    assert status_files(settings.outbox) == []
    # And a writer killed (SIGKILL) after it recorded a status file, before writing it
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_RECORDING],
        env=cli_env(home),
        cwd=home,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    name = killed.stdout.strip()
    assert not (settings.outbox / name).exists()
    # When the worker runs again with status files on
    assert cli("run", "--once", home=home, **on).returncode == 0
    # Then that file is written under the name recorded, with the change it took
    assert status_files(settings.outbox) == [settings.outbox / name]
    assert paid_in([settings.outbox / name]) == [str(one)]
    # And a later change goes to a new file only: each change is in exactly one file
    recorded_at = store.value("SELECT max(recorded_at) FROM status_files")
    while time.time() < recorded_at + 1:  # the next file is due a second after that one
        time.sleep(0.05)
    (settings.inbox / "pay-2.csv").write_text(payment_csv([payment_row("PAY-2", two, 10000)]))
    assert cli("run", "--once", home=home, **on).returncode == 0
    files = status_files(settings.outbox)
    assert len(files) == 2
    assert paid_in(files) == sorted([str(one), str(two)])
    assert not list(settings.outbox.glob(".*.tmp"))


def wait_until(condition, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_the_running_worker_writes_status_files_as_invoices_are_paid(settings, store):
    # Given a running worker with status files on
    home = settings.home
    env = cli_env(home, INVOICE_WORKER_STATUS_FILES="true", INVOICE_WORKER_STATUS_FILE_SECONDS="1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (settings.inbox / "march.csv").write_text(invoice_csv([invoice_row(1)]))
        assert wait_until(lambda: store.value("SELECT count(*) FROM invoices") == 1)
        # When its invoice is paid
        number = store.value("SELECT invoice_number FROM invoices")
        (settings.inbox / "pay.csv").write_text(payment_csv([payment_row("PAY-1", number, 10000)]))
        # Then a status file lists it, without the worker being stopped
        assert wait_until(lambda: bool(status_files(settings.outbox)))
        assert paid_in(status_files(settings.outbox)) == [str(number)]
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0


@pytest.mark.parametrize("value", ["0", "0.5", "-1"])
def test_a_status_file_interval_under_a_second_is_a_clear_error(tmp_path, value):
    with pytest.raises(ConfigError, match="status_file_seconds"):
        load(env={"INVOICE_WORKER_STATUS_FILE_SECONDS": value}, home=tmp_path)


def test_status_files_are_off_by_default_and_turned_on_from_the_environment(tmp_path):
    default = load(env={}, home=tmp_path)
    assert (default.status_files, default.status_file_seconds) == (False, 60.0)
    on = load(env={"INVOICE_WORKER_STATUS_FILES": "true"}, home=tmp_path)
    assert on.status_files is True
