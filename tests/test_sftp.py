"""SFTP pull and push against a real SFTP server process: complete files only, each
exactly once, whatever is killed when."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from helpers import cli, cli_env, invoice_csv, invoice_row, read_results
from sftpserver import PASSWORD, SftpServer

from worker.intake.sftp import SftpPoller
from worker.log import EventFormatter
from worker.service import run as service
from worker.settings import Settings
from worker.state import Store
from worker.state import sftp as sftp_state


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (sqlite3.OperationalError, FileNotFoundError):
            value = None
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached in {timeout}s")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = EventFormatter()
    return [formatter.format(r) for r in caplog.records]


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [line for line in lines(caplog) if f" {name} " in line or line.endswith(f" {name}")]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_rows(home: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(home / "var" / "state.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM files ORDER BY id").fetchall()
    finally:
        conn.close()


def big_invoices(rows: int) -> bytes:
    return invoice_csv([invoice_row(n) for n in range(1, rows + 1)]).encode()


def start_run(home: Path, server: SftpServer, **extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = home / f"run-{time.monotonic_ns()}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"],
        env=cli_env(home, INVOICE_WORKER_WORKER_PROCESSES="1", **server.settings(**extra)),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    return proc, log


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


# -- end to end, the real process --------------------------------------------------------


def test_run_once_fetches_complete_files_processes_them_removes_them_and_uploads_results(
    home: Path, sftp_server: SftpServer
):
    # Given two invoice files on the server, beside names that are never picked up
    inbox = sftp_server.inbox
    (inbox / "march.csv").write_text(invoice_csv([invoice_row(1), invoice_row(2)]))
    (inbox / "april.csv").write_text(invoice_csv([invoice_row(3)]))
    (inbox / ".hidden.csv").write_text(invoice_csv([invoice_row(4)]))
    (inbox / "upload.csv.part").write_text(invoice_csv([invoice_row(5)]))
    (inbox / "sub").mkdir()
    (inbox / "sub" / "nested.csv").write_text(invoice_csv([invoice_row(6)]))
    env = sftp_server.settings(sftp_outbox="/results")

    # When run --once runs
    done = cli("run", "--once", home=home, **env)

    # Then both are processed from their whole bytes and gone from the server
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "archive" / "march.csv").exists() and (home / "archive" / "april.csv").exists()
    assert len(read_results(home / "outbox" / "march.csv.results.csv")) == 2
    assert sorted(p.name for p in inbox.iterdir()) == [".hidden.csv", "sub", "upload.csv.part"]
    assert (inbox / "sub" / "nested.csv").exists()
    assert [r["name"] for r in files_rows(home)] == ["april.csv", "march.csv"]
    # And their results are on the server too, whole
    results = sftp_server.root / "results"
    assert sorted(p.name for p in results.iterdir()) == [
        "april.csv.results.csv",
        "march.csv.results.csv",
    ]
    assert (results / "march.csv.results.csv").read_bytes() == (
        home / "outbox" / "march.csv.results.csv"
    ).read_bytes()
    for event in ("sftp.started", "sftp.fetched", "sftp.removed", "sftp.uploaded"):
        assert event in done.stderr
    assert "name=march.csv size=" in done.stderr

    # And a second run uploads nothing again
    again = cli("run", "--once", home=home, **env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sftp.uploaded" not in again.stderr
    assert len(files_rows(home)) == 2


def test_run_pulls_files_as_they_arrive_and_sigterm_stops_it_cleanly(
    home: Path, sftp_server: SftpServer
):
    # Given the worker running, pulling from the server into an archive folder there
    proc, log = start_run(home, sftp_server, sftp_archive="/archive")
    try:
        wait_for(lambda: "sftp.started" in log.read_text(), what="the poller")
        # When a file arrives on the server (written, then renamed, as an ERP does)
        (sftp_server.inbox / ".late.csv.tmp").write_text(invoice_csv([invoice_row(1)]))
        os.rename(sftp_server.inbox / ".late.csv.tmp", sftp_server.inbox / "late.csv")
        # Then it is processed, and moved to the archive on the server
        wait_for(lambda: (home / "archive" / "late.csv").exists(), what="processing")
        wait_for(lambda: (sftp_server.root / "archive" / "late.csv").exists(), what="archive")
    finally:
        # And SIGTERM stops the worker, its poller too, cleanly
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "sftp.archived" in text and "worker.stopped" in text
    assert not list(sftp_server.inbox.iterdir())


def test_the_worker_killed_after_registering_a_file_but_before_removing_it_fetches_nothing_twice(
    home: Path, sftp_server: SftpServer
):
    # Given a server that refuses, for now, to remove files
    content = invoice_csv([invoice_row(n) for n in range(1, 4)]).encode()
    (sftp_server.inbox / "held.csv").write_bytes(content)
    sftp_server.hold.touch()
    proc, _ = start_run(home, sftp_server)
    try:
        # When the worker is killed once the file is registered and still on the server
        wait_for(lambda: files_rows(home), what="the file's row")
        assert (sftp_server.inbox / "held.csv").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    sftp_server.hold.unlink()

    # Then the next run removes it from the server, and fetches it no second time
    done = cli("run", "--once", home=home, **sftp_server.settings())
    assert done.returncode == 0, done.stderr[-3000:]
    rows = files_rows(home)
    assert [(r["name"], r["state"], r["error_code"], r["sha256"]) for r in rows] == [
        ("held.csv", "processed", None, sha(content))
    ]
    assert not (sftp_server.inbox / "held.csv").exists()
    assert "sftp.removed" in done.stderr and "sftp.fetched" not in done.stderr
    assert (home / "archive" / "held.csv").read_bytes() == content


def test_the_worker_killed_mid_download_leaves_a_partial_the_next_start_deletes(
    home: Path, sftp_server: SftpServer
):
    # Given a slow server and a file that takes a while to download
    content = big_invoices(4000)
    (sftp_server.inbox / "big.csv").write_bytes(content)
    sftp_server.kill()
    sftp_server.start(read_delay=0.05)
    proc, _ = start_run(home, sftp_server)
    try:
        # When the worker is killed while the download is under way
        partial = wait_for(
            lambda: next((home / "inbox" / ".sftp").glob("*/.download"), None),
            what="a partial download",
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert partial.exists() and not files_rows(home)

    # Then the next start deletes the partial and fetches the file whole, once
    sftp_server.kill()
    sftp_server.start(read_delay=0)
    done = cli("run", "--once", home=home, **sftp_server.settings())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sftp.partial_removed" in done.stderr
    assert not partial.parent.exists()
    rows = files_rows(home)
    assert [(r["state"], r["sha256"], r["created"]) for r in rows] == [
        ("processed", sha(content), 4000)
    ]
    assert not (sftp_server.inbox / "big.csv").exists()


# -- the poller in this process ----------------------------------------------------------


def test_fetched_files_move_to_sftp_archive_under_a_free_name(
    sftp_settings: Settings, sftp_server: SftpServer, make_pipeline: Any, store: Store
):
    # Given an archive on the server that already holds a march.csv
    archive = sftp_server.root / "done"
    archive.mkdir()
    (archive / "march.csv").write_text("an older march\n")
    content = invoice_csv([invoice_row(1)])
    (sftp_server.inbox / "march.csv").write_text(content)
    s = sftp_settings.with_(sftp_archive="/done")
    h = make_pipeline(s)

    # When the poller fetches it
    ids = SftpPoller(s, store, service.enqueuer(store)).fetch_once()

    # Then it is processed, and on the server moved beside the older one
    assert len(ids) == 1 and h.wait_final(1)[0].state == "processed"
    assert not (sftp_server.inbox / "march.csv").exists()
    assert (archive / "march.csv").read_text() == "an older march\n"
    assert (archive / "march.1.csv").read_text() == content


def test_in_done_marker_mode_a_file_waits_for_its_marker_and_both_leave_the_server(
    sftp_settings: Settings, sftp_server: SftpServer, store: Store
):
    s = sftp_settings.with_(done_marker=True)
    (sftp_server.inbox / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    assert SftpPoller(s, store, lambda ids: None).fetch_once() == []
    (sftp_server.inbox / "a.csv.done").touch()
    assert len(SftpPoller(s, store, lambda ids: None).fetch_once()) == 1
    assert not list(sftp_server.inbox.iterdir())


def test_a_file_still_growing_on_the_server_is_not_fetched_until_it_holds_still(
    sftp_settings: Settings, sftp_server: SftpServer, make_pipeline: Any, store: Store
):
    # Given a poller with a settle time of 2 s, and a file the ERP writes row by row
    s = sftp_settings.with_(settle_seconds=2.0)
    h = make_pipeline(s)
    poller = SftpPoller(s, store, service.enqueuer(store))
    poller.start()
    try:
        target = sftp_server.inbox / "growing.csv"
        with target.open("w") as out:
            out.write(invoice_csv([]))
            for n in range(1, 31):
                # Then nothing is fetched while it grows
                assert not store.all("SELECT id FROM files")
                out.write(invoice_csv([invoice_row(n)]).split("\n", 1)[1])
                out.flush()
                time.sleep(0.1)
        # And once it holds still, it is fetched whole
        (file,) = h.wait_final(1, timeout=60)
    finally:
        poller.stop()
    assert (file.rows, file.created) == (30, 30)


def test_a_wrong_host_key_refuses_to_connect_and_the_password_is_never_logged(
    sftp_settings: Settings,
    sftp_server: SftpServer,
    store: Store,
    caplog: pytest.LogCaptureFixture,
):
    # Given a known_hosts file that names another key for the server
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    sftp_server.known_hosts.write_text(f"[127.0.0.1]:{sftp_server.port} {other}")
    (sftp_server.inbox / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    s = sftp_settings.with_(sftp_url=sftp_server.url(password=True), sftp_key_file=None)

    # When the poller tries the server
    ids = SftpPoller(s, store, lambda ids: None).fetch_once()

    # Then it refuses to log in, says so, and leaves the file alone
    assert ids == [] and (sftp_server.inbox / "a.csv").exists()
    (line,) = events(caplog, "sftp.unreachable")
    assert 'url="sftp://erp:***@127.0.0.1:' in line and "not trusted" in line
    assert not any(PASSWORD in text for text in lines(caplog))


def test_a_password_in_the_url_logs_in_and_is_never_logged(
    sftp_settings: Settings,
    sftp_server: SftpServer,
    store: Store,
    caplog: pytest.LogCaptureFixture,
):
    (sftp_server.inbox / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    s = sftp_settings.with_(sftp_url=sftp_server.url(password=True), sftp_key_file=None)
    fetched: list[int] = []

    ids = SftpPoller(s, store, fetched.extend).fetch_once()

    assert ids == fetched and len(ids) == 1
    assert not (sftp_server.inbox / "a.csv").exists()
    assert 'url="sftp://erp:***@127.0.0.1:' in events(caplog, "sftp.started")[0]
    assert not any(PASSWORD in text for text in lines(caplog))


def test_the_server_killed_mid_download_then_restarted_delivers_each_file_exactly_once(
    sftp_settings: Settings,
    sftp_server: SftpServer,
    make_pipeline: Any,
    store: Store,
    caplog: pytest.LogCaptureFixture,
):
    # Given a slow server holding a large file and a small one
    big, small = big_invoices(3000), invoice_csv([invoice_row(9001)]).encode()
    (sftp_server.inbox / "big.csv").write_bytes(big)
    (sftp_server.inbox / "small.csv").write_bytes(small)
    sftp_server.kill()
    sftp_server.start(read_delay=0.05)
    h = make_pipeline(sftp_settings)
    poller = SftpPoller(sftp_settings, store, service.enqueuer(store))
    poller.start()
    downloads = sftp_settings.inbox / ".sftp"
    try:
        # When the server is killed in the middle of a download
        wait_for(lambda: next(downloads.glob("*/.download"), None), what="a download")
        sftp_server.kill()
        wait_for(lambda: events(caplog, "sftp.unreachable"), what="the failure logged")
        # Then the partial copy is gone, and nothing was registered from it
        assert not list(downloads.glob("*/.download"))
        # And once the server is back, every file arrives, each exactly once
        sftp_server.start(read_delay=0)
        rows = h.wait_final(2, timeout=120)
    finally:
        poller.stop()
    assert sorted((r.name, r.sha256, r.state) for r in rows) == [
        ("big.csv", sha(big), "processed"),
        ("small.csv", sha(small), "processed"),
    ]
    assert not list(sftp_server.inbox.iterdir())
    assert len(store.all("SELECT id FROM sftp_fetches")) == 2


# -- crash states, set up as a crash leaves them -------------------------------------------


def _recorded_download(settings: Settings, store: Store, server: SftpServer, name: str) -> Path:
    """A download recorded whole, as a crash right after it leaves it (not yet claimed)."""
    remote = server.inbox / name
    info = remote.stat()
    local = settings.inbox / ".sftp" / "0123456789abcdef" / name
    local.parent.mkdir(parents=True)
    shutil.copyfile(remote, local)
    sftp_state.record_download(
        store,
        f"/inbox/{name}",
        info.st_size,
        int(info.st_mtime),
        sha(remote.read_bytes()),
        str(local),
    )
    return local


@pytest.mark.parametrize("claim_renamed", [False, True], ids=["not claimed", "claim not recorded"])
def test_a_download_recorded_before_a_crash_is_claimed_once_and_not_downloaded_again(
    sftp_settings: Settings,
    sftp_server: SftpServer,
    store: Store,
    caplog: pytest.LogCaptureFixture,
    claim_renamed: bool,
):
    # Given a crash after the download was recorded (and, maybe, after the claim's rename
    # but before its row was written)
    (sftp_server.inbox / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    local = _recorded_download(sftp_settings, store, sftp_server, "a.csv")
    if claim_renamed:
        claimed = sftp_settings.claimed / "fedcba9876543210" / "a.csv"
        claimed.parent.mkdir(parents=True)
        os.rename(local, claimed)
    enqueued: list[int] = []

    # When the poller starts again
    SftpPoller(sftp_settings, store, enqueued.extend).fetch_once()

    # Then the one local copy is registered once, and the remote file removed
    rows = store.all("SELECT id, name FROM files")
    assert [r["name"] for r in rows] == ["a.csv"]
    assert rows[0]["id"] in enqueued
    assert not (sftp_server.inbox / "a.csv").exists()
    fetches = sftp_state.open_fetches(store)
    assert fetches == [] and len(store.all("SELECT id FROM sftp_fetches")) == 1
    assert not events(caplog, "sftp.partial_removed")
