"""The four folders the ERP sees may live elsewhere; var/ and mail/ stay under the home."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import drop, invoice_csv, invoice_row, read_results

from worker.settings import Settings, load

#: A tmpfs: a filesystem other than tmp_path's, so that moves there cross filesystems.
OTHER_FILESYSTEM = Path("/dev/shm")


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    assert OTHER_FILESYSTEM.is_dir(), "these tests need a tmpfs at /dev/shm"
    folder = OTHER_FILESYSTEM / f"invoice-worker-test-{os.getpid()}-{tmp_path.name}"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_folders_given_relative_paths_are_found_under_the_home(tmp_path: Path) -> None:
    s = load(env={"INVOICE_WORKER_INBOX_DIR": "erp/in"}, home=tmp_path, outbox_dir="/srv/out")
    assert s.inbox == tmp_path / "erp" / "in"
    assert s.claimed == tmp_path / "erp" / "in" / ".claimed"
    assert s.outbox == Path("/srv/out")
    assert (s.archive, s.var, s.mail) == (tmp_path / "archive", tmp_path / "var", tmp_path / "mail")


def test_a_file_dropped_in_folders_elsewhere_is_processed_there(
    make_pipeline, settings: Settings, tmp_path: Path, elsewhere: Path
) -> None:
    # Given the inbox and outbox in one folder outside the home, and archive/ and
    # rejected/ on another filesystem
    share = tmp_path / "share"
    s = settings.with_(
        inbox_dir=str(share / "in"),
        outbox_dir=str(share / "out"),
        archive_dir=str(elsewhere / "archive"),
        rejected_dir=str(elsewhere / "rejected"),
    )
    s.ensure_folders()
    h = make_pipeline(s)
    # When a good file and an unreadable one arrive there
    good = invoice_csv([invoice_row(1), invoice_row(2)]).encode()
    drop(s, "march.csv", good)
    drop(s, "junk.csv", b"\x00\x01 not a table")
    files = h.wait_final(2)
    # Then their results are in the outbox there, the originals moved across filesystems,
    # and nothing is left in the inbox or under the home's own folders
    assert {f.name: f.state for f in files} == {"march.csv": "processed", "junk.csv": "rejected"}
    assert len(read_results(share / "out" / "march.csv.results.csv")) == 2
    assert (share / "out" / "junk.csv.error.json").exists()
    assert (elsewhere / "archive" / "march.csv").read_bytes() == good
    assert (elsewhere / "rejected" / "junk.csv").exists()
    assert [p.name for p in (share / "in").iterdir() if p.name != ".claimed"] == []
    assert [*(s.home / "archive").iterdir(), *(s.home / "outbox").iterdir()] == []
    assert s.state_db.exists()
