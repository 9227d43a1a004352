"""What proves a file complete: no writer on this host holds it open; and a claimed file
that changes before it is read in full is read again, whole."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import drop, invoice_csv, invoice_row, read_results

from worker.intake import claim, complete
from worker.intake.watcher import Watcher
from worker.kinds import KINDS
from worker.pipeline import stages
from worker.pipeline.runtime import Runtime
from worker.settings import Settings
from worker.state import FileState, Store, files

#: Holds a file open for writing until its stdin closes, writing each part it is given
#: (one hex line a part).
HOLDER = """
import sys
with open(sys.argv[1], "ab", buffering=0) as fh:
    print("open", flush=True)
    for line in sys.stdin:
        fh.write(bytes.fromhex(line.strip()))
        print("wrote", flush=True)
"""


class Writer:
    """Another process holding a file open for writing, as a slow ERP export does."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout and self.proc.stdout.readline() == b"open\n"

    def write(self, data: bytes) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(data.hex().encode() + b"\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == b"wrote\n"

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0


@pytest.fixture
def writer(settings: Settings) -> Iterator[list[Writer]]:
    started: list[Writer] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def test_the_kernel_says_whether_a_process_holds_a_file_open_for_writing(
    tmp_path: Path, writer: list[Writer]
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"header\n")
    assert complete.writers(path) is complete.Writer.NONE
    w = Writer(path)
    writer.append(w)
    assert complete.writers(path) is complete.Writer.OPEN
    w.close()
    assert complete.writers(path) is complete.Writer.NONE


def test_without_the_right_to_a_lease_the_check_says_it_cannot_tell() -> None:
    # A lease needs the file's owner or CAP_LEASE: root asks as nobody (its capabilities
    # go with its uid); anyone else asks about a file of root's.
    code = (
        "import os; from worker.intake import complete\n"
        "if os.geteuid() == 0: os.setuid(65534)\n"
        "print(complete.writers('/etc/passwd'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(complete.__file__).parents[2])},
        check=True,
    )
    assert out.stdout.strip() == "unknown"


def test_a_renamed_in_file_is_claimed_at_once_whatever_the_settle_time(
    settings: Settings, store: Store
) -> None:
    watcher = Watcher(settings.with_(settle_seconds=3600), store, lambda ids: None)
    path = drop(settings, "march.csv", invoice_csv([invoice_row(1)]))
    watcher.notice(str(path))
    assert len(watcher.tick()) == 1


def test_a_file_held_open_by_its_writer_is_not_claimed_however_long_it_pauses(
    settings: Settings, store: Store, writer: list[Writer], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a settle time of 0.2 s and a writer that wrote the first rows and paused
    watcher = Watcher(settings.with_(settle_seconds=0.2), store, lambda ids: None)
    data = invoice_csv([invoice_row(i) for i in range(1, 41)]).encode()
    path = settings.inbox / "export.csv"
    w = Writer(path)
    writer.append(w)
    w.write(data[: len(data) // 2])
    watcher.scan()
    # When the watcher looks for far longer than the settle time
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert watcher.tick() == []
        time.sleep(0.05)
    # Then nothing was claimed, and the log says why
    assert path.exists()
    assert any("file.waiting_for_writer" in r.getMessage() for r in caplog.records)
    # And once the writer finishes and closes the file, it is claimed whole
    w.write(data[len(data) // 2 :])
    assert watcher.tick() == []
    w.close()
    [file_id] = watcher.tick()
    assert files.get(store, file_id).size == len(data)


def test_an_empty_file_waits_out_the_settle_time_in_case_its_writer_returns(
    settings: Settings, store: Store
) -> None:
    # A settle time far longer than any stall between the notice and the first tick.
    watcher = Watcher(settings.with_(settle_seconds=2.0), store, lambda ids: None)
    path = drop(settings, "placeholder.csv", b"")
    watcher.notice(str(path))
    assert watcher.tick() == []
    deadline = time.monotonic() + 15
    claimed: list[int] = []
    while not claimed and time.monotonic() < deadline:
        time.sleep(0.05)
        claimed = watcher.tick()
    assert len(claimed) == 1


def _runtime(settings: Settings, store: Store) -> Runtime:
    return Runtime(settings=settings, store=store, kinds=KINDS)


def test_a_file_that_grew_after_its_claim_is_read_again_whole(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a file claimed with its first 10 rows
    rows = [invoice_row(i) for i in range(1, 31)]
    data = invoice_csv(rows).encode()
    head = data[: data.index(b"\n", len(data) // 3) + 1]
    file_id = claim.claim(settings, store, drop(settings, "grows.csv", head))
    assert file_id is not None
    # When a writer that still had it open adds the rest before it is read
    with open(files.get(store, file_id).claimed_path, "ab") as fh:
        fh.write(data[len(head) :])
    state = stages.advance(_runtime(settings, store), file_id)
    # Then it is processed from its final bytes: every row once, none from the first read
    assert state is FileState.PROCESSED
    file = files.get(store, file_id)
    assert (file.rows, file.created, file.size) == (30, 30, len(data))
    assert len(read_results(settings.outbox / "grows.csv.results.csv")) == 30
    assert any("file.changed_after_claim" in r.getMessage() for r in caplog.records)


def test_a_claimed_file_its_writer_still_holds_waits_for_the_writer_to_close_it(
    settings: Settings, store: Store, writer: list[Writer]
) -> None:
    # Given a file claimed while a writer held it open (it opened it just before the claim)
    rows = [invoice_row(i) for i in range(1, 61)]
    data = invoice_csv(rows).encode()
    cut = data.index(b"\n", len(data) // 4) + 1
    path = settings.inbox / "raced.csv"
    w = Writer(path)
    writer.append(w)
    w.write(data[:cut])
    file_id = claim.claim(settings, store, path)
    assert file_id is not None
    # When the job runs while the writer is still writing, pausing, then closes
    done: list[FileState] = []
    job = threading.Thread(
        target=lambda: done.append(stages.advance(_runtime(settings, store), file_id))
    )
    job.start()
    for start in range(cut, len(data), 400):
        time.sleep(0.3)
        w.write(data[start : start + 400])
    assert not done
    w.close()
    job.join(60)
    # Then every row was created once, from the whole file
    assert done == [FileState.PROCESSED]
    file = files.get(store, file_id)
    assert (file.rows, file.created) == (60, 60)
    results = read_results(settings.outbox / "raced.csv.results.csv")
    refs = [r["merchant_reference"] for r in results]
    assert sorted(refs) == sorted(r["merchant_reference"] for r in rows)
