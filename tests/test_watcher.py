"""The watcher picks up complete files only, once each, with real events and real files."""

from __future__ import annotations

import time

import pytest
from helpers import invoice_csv, invoice_row, read_results

from worker.intake.watcher import make_observer


def test_a_file_written_in_chunks_without_a_temp_name_is_read_whole_once(
    make_pipeline, settings, store
):
    # Given a settle time of one second and a writer that pauses between chunks
    h = make_pipeline(settings.with_(settle_seconds=1.0))
    rows = [invoice_row(i) for i in range(1, 301)]
    data = invoice_csv(rows).encode()
    parts = [data[i : i + len(data) // 6 + 1] for i in range(0, len(data), len(data) // 6 + 1)]
    # When it writes straight into the inbox over about three seconds
    with open(settings.inbox / "slow.csv", "wb") as fh:
        for part in parts:
            fh.write(part)
            fh.flush()
            time.sleep(0.5)
    # Then the file is claimed once, after it stopped growing, with every row
    [file] = h.wait_final()
    assert file.state == "processed"
    assert file.rows == 300 and file.created == 300
    assert len(read_results(settings.outbox / "slow.csv.results.csv")) == 300
    assert store.one("SELECT count(*) AS n FROM files")["n"] == 1


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.csv",
        "~lock.csv",
        "a.csv.tmp",
        "a.csv.part",
        "a.csv.partial",
        "a.csv.filepart",
        "a.csv.crdownload",
        "a.csv~",
        "A.CSV.TMP",
    ],
)
def test_temporary_names_are_never_picked_up(pipeline, settings, store, name):
    (settings.inbox / name).write_text(invoice_csv([invoice_row(1)]))
    time.sleep(1.5)  # three reconciliation scans
    assert (settings.inbox / name).exists()
    assert store.one("SELECT count(*) AS n FROM files")["n"] == 0


def test_write_then_rename_is_picked_up(pipeline, settings):
    tmp = settings.inbox / "march.csv.part"
    tmp.write_text(invoice_csv([invoice_row(1)]))
    time.sleep(0.5)
    tmp.rename(settings.inbox / "march.csv")
    [file] = pipeline.wait_final()
    assert file.state == "processed"


def test_done_marker_mode_waits_for_the_marker(make_pipeline, settings, store):
    h = make_pipeline(settings.with_(done_marker=True))
    (settings.inbox / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    time.sleep(1.5)
    assert store.one("SELECT count(*) AS n FROM files")["n"] == 0
    (settings.inbox / "a.csv.done").write_text("")
    [file] = h.wait_final()
    assert file.state == "processed"
    assert not (settings.inbox / "a.csv.done").exists()


def test_the_polling_observer_picks_files_up(make_pipeline, settings):
    s = settings.with_(observer="polling")
    assert type(make_observer(s)).__name__ == "PollingObserver"
    h = make_pipeline(s)
    h.drop("polled.csv", invoice_csv([invoice_row(1)]))
    [file] = h.wait_final()
    assert file.state == "processed"


def test_subfolders_are_not_watched_unless_configured(pipeline, settings, store):
    sub = settings.inbox / "later"
    sub.mkdir()
    (sub / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    time.sleep(1.5)
    assert (sub / "a.csv").exists()
    assert store.one("SELECT count(*) AS n FROM files")["n"] == 0


def test_subfolders_are_watched_when_configured(make_pipeline, settings):
    sub = settings.inbox / "erp-a"
    sub.mkdir()
    h = make_pipeline(settings.with_(recursive=True))
    (sub / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    [file] = h.wait_final()
    assert file.state == "processed"
    assert not (sub / "a.csv").exists()


def test_many_events_for_one_file_make_one_claim(pipeline, settings, store):
    path = settings.inbox / "touched.csv"
    path.write_text(invoice_csv([invoice_row(1)]))
    for _ in range(20):
        path.touch()
    pipeline.wait_final()
    time.sleep(0.5)
    assert store.one("SELECT count(*) AS n FROM files")["n"] == 1
