"""What processing writes is what ``invoice_rows`` says an invoice row is, column by column."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from helpers import invoice_csv, invoice_row
from oracle import invoice_rows

from worker.intake.readers import open_table
from worker.kinds import KINDS
from worker.kinds.context import rules_context
from worker.kinds.invoices.processing import process_chunk, process_chunks
from worker.kinds.invoices.validation import validate_to
from worker.pipeline.chunks import path as chunk_path
from worker.pipeline.chunks import read_all as read_chunks
from worker.state import Store, files
from worker.state.invoices import INSERT_COLUMNS

pytestmark = pytest.mark.backends

LINK = "https://pay.example.com/it's/"


@pytest.fixture(params=["bound", "staged"])
def write_path(request, monkeypatch) -> str:
    """Each test runs twice: chunks bound row by row, and through a staging file."""
    from worker.state import staging

    monkeypatch.setattr(staging, "STAGE_MIN_ROWS", 10**9 if request.param == "bound" else 1)
    return request.param


def validated(tmp_path: Path, name: str, rows: list[dict[str, str]], chunk_rows: int) -> Path:
    source = tmp_path / name
    source.write_text(invoice_csv(rows))
    folder = tmp_path / f"{name}.work"
    validate_to(
        open_table(source, folder, KINDS.signatures),
        rules_context((), {}, None),
        folder,
        chunk_rows,
        None,
    )
    return folder


def test_the_rows_written_match_the_invoice_shape(
    store: Store, tmp_path: Path, write_path: str
) -> None:
    # Given a validated file with every kind of notification and optional blanks
    rows = [
        invoice_row(1, notification_type="EMAIL"),
        invoice_row(2, notification_type="sms, email", customer_phone="+250788000000"),
        invoice_row(3, notification_type="NONE,SMS", customer_name=""),
        invoice_row(4, amount="bad"),
        invoice_row(5, notification_type="SMS", customer_phone="0788", return_url="http://x.y"),
    ]
    folder = validated(tmp_path, "in.csv", rows, chunk_rows=3)
    # When its first chunk is processed, then all of them
    assert process_chunk(store, 7, 0, chunk_path(folder, 0), 500, LINK) == 3
    done: list[int] = []
    chunks = [(index, chunk_path(folder, index)) for index, _ in read_chunks(folder)]
    process_chunks(store, 7, chunks, 500, LINK, lambda: done.append(1))
    assert len(chunks) == 2 and len(done) == 1, "a chunk already done is skipped"
    # Then the table holds exactly the rows invoice_rows describes
    expected = pl.concat([invoice_rows(c, 7, 500, LINK) for _, c in read_chunks(folder)])
    got = store.all(f"SELECT {', '.join(INSERT_COLUMNS)} FROM invoices ORDER BY invoice_number")
    assert len(got) == 4
    for row, want in zip(got, expected.iter_rows(named=True), strict=True):
        for column in INSERT_COLUMNS:
            if column not in ("created_at", "updated_at"):
                assert row[column] == want[column], column
    assert not list(folder.glob("*.stage.db")), "staging files are deleted after use"


def test_a_reference_created_after_validation_becomes_a_late_rejection(
    store: Store, tmp_path: Path, write_path: str
) -> None:
    # Given a file validated while REF-2 was still free, and a batch invoice (no reference)
    mine = validated(tmp_path, "mine.csv", [invoice_row(n) for n in range(1, 5)], 10)
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO invoices (invoice_number, file_id, type, status, amount, currency,"
            " token, payment_link_url, created_at, updated_at)"
            " VALUES (1, 9, 'BATCH', 'NEW', 5, 'USD', 't', 'u', 'now', 'now')"
        )
    # When another file creates REF-2 before this one is processed
    theirs = validated(tmp_path, "theirs.csv", [invoice_row(2, amount="999")], 10)
    assert process_chunk(store, 1, 0, chunk_path(theirs, 0), 100, LINK) == 1
    created = process_chunk(store, 2, 0, chunk_path(mine, 0), 200, LINK)
    # Then the other three rows are invoices, and REF-2's line is a late rejection
    assert created == 3
    assert [tuple(r) for r in store.all("SELECT * FROM late_rejections")] == [
        (2, 3, "MERCHANT_REFERENCE_EXISTS")
    ]
    refs = store.all(
        "SELECT merchant_reference, file_id, amount FROM invoices WHERE type = 'SINGLE' ORDER BY 1"
    )
    assert [tuple(r) for r in refs] == [
        (invoice_row(1)["merchant_reference"], 2, int(invoice_row(1)["amount"])),
        (invoice_row(2)["merchant_reference"], 1, 999),
        (invoice_row(3)["merchant_reference"], 2, int(invoice_row(3)["amount"])),
        (invoice_row(4)["merchant_reference"], 2, int(invoice_row(4)["amount"])),
    ]
    # And processing the chunk again creates nothing twice
    assert process_chunk(store, 2, 0, chunk_path(mine, 0), 200, LINK) is None
    assert store.one("SELECT count(*) FROM invoices WHERE type = 'SINGLE'")[0] == 4


def test_a_failure_between_chunks_leaves_no_staging_file_and_a_rerun_finishes(
    store: Store, tmp_path: Path, monkeypatch
) -> None:
    from worker.state import staging

    monkeypatch.setattr(staging, "STAGE_MIN_ROWS", 1)
    # Given a file of four staged chunks
    folder = validated(tmp_path, "in.csv", [invoice_row(n) for n in range(1, 9)], 2)
    chunks = [(index, chunk_path(folder, index)) for index, _ in read_chunks(folder)]
    assert len(chunks) == 4
    calls: list[int] = []

    def lease_lost() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("lease lost")

    # When processing stops with an error after the second chunk
    with pytest.raises(RuntimeError, match="lease lost"):
        process_chunks(store, 7, chunks, 500, LINK, lease_lost)
    # Then two chunks' invoices exist, and no staging file is left, not even the one ahead
    assert store.one("SELECT count(*) FROM invoices")[0] == 4
    assert not list(folder.glob("*.stage.db"))
    # And a re-run creates the rest, each invoice once
    process_chunks(store, 7, chunks, 500, LINK, lambda: None)
    numbers = [r[0] for r in store.all("SELECT invoice_number FROM invoices ORDER BY 1")]
    assert numbers == list(range(500, 508))


def test_two_deliveries_of_one_staged_chunk_create_its_invoices_once(
    store: Store, tmp_path: Path, monkeypatch
) -> None:
    import threading

    from worker.state import staging

    monkeypatch.setattr(staging, "STAGE_MIN_ROWS", 1)
    # Given one chunk of 1,000 valid rows
    folder = validated(tmp_path, "in.csv", [invoice_row(n) for n in range(1, 1001)], 1000)
    results: list[int | None] = []

    def deliver() -> None:
        results.append(process_chunk(store, 7, 0, chunk_path(folder, 0), 500, LINK))

    # When two threads process it at once, each through its own staging file
    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then one created the invoices and the other found the chunk done
    assert sorted(results, key=lambda r: r is None) == [1000, None]
    assert store.one("SELECT count(*) FROM invoices")[0] == 1000
    assert not list(folder.glob("*.stage.db"))


@pytest.mark.parametrize("piece", [3, 1 << 20])
def test_seen_references_find_exactly_the_earlier_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    from worker.kinds.invoices import seen as seen_module

    # Given the references of two earlier reads, looked up a few hashes at a time or all
    monkeypatch.setattr(seen_module, "PIECE", piece)
    seen = seen_module.SeenReferences(tmp_path)
    assert not seen.met(pl.Series([f"REF-{n}" for n in range(0, 5000)])).any()
    assert not seen.met(pl.Series([f"REF-{n}" for n in range(5000, 10000)] + [None])).any()
    # When a later read repeats some of them, and has new ones and a blank
    later = pl.Series(["REF-1", "REF-9999", "REF-10000", None, "ref-1", "REF-5000"])
    # Then exactly the repeated ones are found, and the earlier hashes are on disk
    assert seen.met(later).to_list() == [True, True, False, False, False, True]
    assert seen.met(pl.Series(["REF-10000", "REF-4999"])).to_list() == [True, True]
    stored = {p.name: p.stat().st_size for p in tmp_path.glob(".seen-*/*")}
    assert stored == {"a.u64": 8 * 10_005, "b.u64": 8 * 10_005}
    seen.close()
    assert not list(tmp_path.glob(".seen-*"))


@pytest.mark.parametrize("chunk_rows", [4, 5, 12])
def test_chunks_made_from_small_reads_are_those_whole_reads_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    from worker.kinds.invoices import validation

    # Given 12 rows read 2 at a time: line 5 repeats line 2's reference (the same chunk,
    # an earlier read), line 13 repeats line 4's (an earlier chunk, unless it is one)
    rows = [invoice_row(n) for n in range(1, 13)]
    rows[3] = invoice_row(4, merchant_reference="REF-000001")
    rows[11] = invoice_row(12, merchant_reference="REF-000003")
    rows[6] = invoice_row(7, amount="bad")
    source = tmp_path / "in.csv"
    source.write_text(invoice_csv(rows))

    def validated_by(read_rows: int, name: str) -> tuple[int, list[tuple[int, pl.DataFrame]]]:
        monkeypatch.setattr(validation, "READ_ROWS", read_rows)
        folder = tmp_path / name
        table = open_table(source, folder, KINDS.signatures)
        summary = validate_to(table, rules_context((), {}, None), folder, chunk_rows, None)
        return summary.chunks, list(read_chunks(folder))

    # When it is validated so, and reading whole chunks
    counted, small = validated_by(2, "small")
    _, whole = validated_by(10**6, "whole")
    # Then the chunks have chunk_rows rows each, the last the rest, and are counted
    sizes = [min(chunk_rows, 12 - start) for start in range(0, 12, chunk_rows)]
    assert [(i, len(c)) for i, c in small] == list(enumerate(sizes))
    assert counted == len(sizes)
    assert not list((tmp_path / "small").glob(".seen-*")), "the earlier hashes are removed"
    # And both repeats are found; lines and ordinals run on across reads and chunks
    frame = pl.concat([c for _, c in small])
    duplicate = frame.filter(pl.col("errors").str.contains("DUPLICATE_MERCHANT_REFERENCE"))
    assert duplicate["line_number"].to_list() == [5, 13]
    assert frame["line_number"].to_list() == list(range(2, 14))
    assert frame.filter("valid")["ordinal"].to_list() == list(range(9))
    # And every chunk is what reading it whole gives (its tokens apart: drawn afresh)
    assert [i for i, _ in whole] == [i for i, _ in small]
    for (_, mine), (_, theirs) in zip(small, whole, strict=True):
        assert mine.drop("token").equals(theirs.drop("token"))
        assert mine["token"].is_null().to_list() == theirs["token"].is_null().to_list()


def test_report_tallies_from_chunks_equal_the_database(
    pipeline, settings, store, monkeypatch
) -> None:
    from worker.kinds.invoices import kind as invoices

    # Given a processed file whose work folder is kept, with rows in three currencies
    monkeypatch.setattr("worker.pipeline.stages._cleanup", lambda rt, file: None)
    phone = {"customer_phone": "+250788000000"}
    rows = [
        invoice_row(1, currency="USD", amount="100", notification_type="EMAIL"),
        invoice_row(2, currency="USD", amount="200", notification_type="sms,email", **phone),
        invoice_row(3, currency="RWF", amount="300", notification_type="SMS", **phone),
        invoice_row(4, currency="RWF", amount="0"),
        invoice_row(5, currency="RWF", amount="50", notification_type="EMAIL"),
    ]
    pipeline.drop("totals.csv", invoice_csv(rows))
    [file] = pipeline.wait_final()
    # And one of its rows (line 6) turned out a late rejection
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO late_rejections VALUES (?, 6, 'MERCHANT_REFERENCE_EXISTS')", (file.id,)
        )
        conn.execute("DELETE FROM invoices WHERE file_id = ? AND line_number = 6", (file.id,))
    kind = KINDS.get("invoices")
    row = files.get(store, file.id)
    # When the tallies are counted from the chunk files, and asked of the database
    monkeypatch.setattr(invoices, "TOTALS_FROM_CHUNKS_ABOVE", 0)
    from_chunks = kind._tallies(pipeline.runtime, row)
    monkeypatch.setattr(invoices, "TOTALS_FROM_CHUNKS_ABOVE", 10**9)
    from_database = kind._tallies(pipeline.runtime, row)
    # Then they agree: per currency, and the emails and SMS asked for
    assert from_chunks == from_database == ([("RWF", 1, 300), ("USD", 2, 300)], 2, 2)


def test_a_chunk_written_again_is_read_anew_not_from_memory(tmp_path: Path) -> None:
    from worker.pipeline.chunks import RecentChunks

    recent = RecentChunks()
    path = tmp_path / "chunk-00000.arrow"
    # Given a chunk kept in memory as it was written
    first = pl.DataFrame({"line_number": [2], "valid": [True]})
    first.write_ipc(path)
    recent.put(path, first)
    assert recent.read(path).equals(first)
    # When a re-run writes the chunk again, under the same name
    second = pl.DataFrame({"line_number": [2], "valid": [False]})
    tmp = tmp_path / ".chunk.tmp"
    second.write_ipc(tmp)
    tmp.replace(path)
    # Then what is read is the new chunk
    assert recent.read(path)["valid"].to_list() == [False]
    assert recent.read(path, ["valid"]).columns == ["valid"]


def test_recent_chunks_are_kept_up_to_a_number_of_rows(tmp_path: Path) -> None:
    from worker.pipeline.chunks import RecentChunks

    # Given a memory of 25 rows, and 64 chunks of 10 rows written one after another
    # (as four threads, each through a group of 16 small files, would write them)
    recent = RecentChunks(keep_rows=25)
    paths = [tmp_path / f"chunk-{n:05d}.arrow" for n in range(64)]
    for n, path in enumerate(paths):
        frame = pl.DataFrame({"line_number": range(10), "valid": [n % 2 == 0] * 10})
        frame.write_ipc(path)
        recent.put(path, frame.with_columns(kept=pl.lit(True)))
    # Then the last two are read from memory, and every earlier one from its file
    assert [("kept" in recent.read(p).columns) for p in paths[-3:]] == [False, True, True]
    assert recent.read(paths[0])["valid"].to_list() == [True] * 10


def test_decisions_an_older_version_left_in_parquet_are_still_read(tmp_path: Path) -> None:
    from worker.pipeline import chunks

    # Given a payment file's decisions that a version before m013 kept beside its
    # chunks, in Parquet, and chunks of today's format beside them
    decided = pl.DataFrame({"line_number": [2], "status": ["APPLIED"]})
    decided.write_parquet(tmp_path / "decided-00003.parquet")
    chunks.write(tmp_path, 0, pl.DataFrame({"line_number": [2]}))
    # Then the decisions are read, with their chunk's index, and the chunks apart
    [(index, frame)] = list(chunks.read_parquet_series(tmp_path, "decided"))
    assert index == 3 and frame.equals(decided)
    assert [i for i, _ in chunks.paths(tmp_path)] == [0]
    assert (tmp_path / "chunk-00000.arrow").exists()
