"""Worker processes: ``run`` starts the others, and none outlives it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import cli, cli_env, invoice_csv, invoice_row


def start_run(home: Path, processes: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = home / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"],
        env=cli_env(home, INVOICE_WORKER_WORKER_PROCESSES=str(processes)),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    return proc, log


def child_pids(log: Path, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"worker\.processes started=\d+ pids=\"?([\d,]+)", log.read_text())
        if found and "watcher.started" in log.read_text():
            return [int(p) for p in found[1].split(",")]
        time.sleep(0.05)
    raise AssertionError(f"no worker.processes line:\n{log.read_text()}")


def gone(pids: list[int], timeout: float) -> bool:
    procs = [psutil.Process(p) for p in pids if psutil.pid_exists(p)]
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not alive


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path


def test_run_starts_its_other_worker_processes_and_sigterm_stops_them_all(home):
    # Given run with three worker processes in all
    proc, log = start_run(home, 3)
    try:
        pids = child_pids(log)
        # Then two more processes run, as its children
        assert len(pids) == 2
        assert all(psutil.Process(p).ppid() == proc.pid for p in pids)
        # And files dropped meanwhile are processed
        for n in range(6):
            (home / "inbox" / f"f{n}.csv").write_text(invoice_csv([invoice_row(10 * n + 1)]))
        deadline = time.monotonic() + 60
        while len(list((home / "archive").glob("f*.csv"))) < 6:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        # When run gets SIGTERM
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    # Then its worker processes have stopped too
    assert gone(pids, timeout=5)
    assert log.read_text().count("worker.stopped") == 3


def test_a_worker_process_that_gets_sigterm_while_starting_still_stops_cleanly(home):
    # Given run with three worker processes in all, the other two only just spawned
    proc, log = start_run(home, 3)
    try:
        pids = child_pids(log)
        # When they get SIGTERM at once, while still starting (as from a process manager)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        # Then each stops cleanly and says so, rather than being killed by the signal
        deadline = time.monotonic() + 30
        while log.read_text().count("worker.stopped") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert gone(pids, timeout=5)
    assert log.read_text().count("worker.stopped") == 3


def test_worker_processes_stop_by_themselves_when_run_is_killed(home):
    # Given run with a second worker process
    proc, log = start_run(home, 2)
    (child,) = child_pids(log)
    # When run is killed with kill -9
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # Then its worker process notices and stops, rather than running on alone
    assert gone([child], timeout=30), log.read_text()
    assert "worker.parent_gone" in log.read_text()
    # And the next run takes over (the embedded Redis too) and exits cleanly
    (home / "inbox" / "after.csv").write_text(invoice_csv([invoice_row(1)]))
    done = cli("run", "--once", home=home)
    assert done.returncode == 0, done.stderr
    assert (home / "archive" / "after.csv").exists()
