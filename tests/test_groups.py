"""Small files advanced together: one validation query for a group, the same outcome for
each file as if it had come alone."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl
import pytest
from helpers import INVOICE_HEADER, invoice_csv, invoice_row, read_results

from rules.columns import Context
from rules.invoices import SAME_CONTENT
from worker.intake import claim, readers
from worker.kinds import KINDS
from worker.kinds.context import rules_context
from worker.kinds.invoices import validation
from worker.pipeline import chunks, groups
from worker.pipeline.runtime import Runtime
from worker.state import files, leases

SAMPLES = {
    "good.csv": invoice_csv([invoice_row(1), invoice_row(2), invoice_row(3)]),
    "bad-rows.csv": invoice_csv(
        [
            invoice_row(10),
            invoice_row(11, amount="12.5.0"),
            invoice_row(10),  # the same reference twice in one file
            invoice_row(12, currency="ZZZ"),
            # In good.csv too, with other content: another file's, not this one's.
            invoice_row(2, amount="20000"),
        ]
    ),
    "few-columns.csv": invoice_csv(
        [invoice_row(20, shoe_size="44"), invoice_row(21)],
        header=(*INVOICE_HEADER[:8], "shoe_size"),
    ),
    "blank-lines.csv": invoice_csv([invoice_row(30)]) + ",,,,,,,,,,,,,\n",
    "exists.csv": invoice_csv([invoice_row(40), invoice_row(41)]),
}


def _table(folder: Path, name: str, text: str) -> readers.Table:
    path = folder / name
    path.write_text(text)
    return readers.open_table(path, folder / f"work-{name}", KINDS.signatures)


def _chunk(folder: Path) -> pl.DataFrame:
    (path,) = folder.glob("chunk-*.arrow")
    return pl.read_ipc(path)


def _invoiced(folder: Path, ctx: Context) -> pl.DataFrame:
    """Invoices as the state holds them: exists.csv's REF-000040 as it is there, and its
    REF-000041 with another amount."""
    folder.mkdir()
    table = _table(folder, "exists.csv", SAMPLES["exists.csv"])
    validation.validate_to(table, ctx, folder / "work", 1000, None)
    return (
        _chunk(folder / "work")
        .select(
            "merchant_reference",
            (pl.col("ordinal") + 500).alias("invoice_number"),
            (pl.lit("https://pay.example.com/") + pl.col("token")).alias("payment_link_url"),
            *SAME_CONTENT,
        )
        .with_columns(
            amount=pl.when(pl.col("merchant_reference") == "REF-000041")
            .then(1)
            .otherwise(pl.col("amount"))
        )
    )


def test_files_validated_together_get_the_chunks_and_summaries_they_would_alone(tmp_path):
    # Given small files with bad rows, repeated and existing references, odd columns
    ctx = rules_context((), {}, None)
    invoiced = _invoiced(tmp_path / "invoiced", ctx)

    def exists(refs: pl.Series) -> pl.DataFrame:
        return invoiced.filter(pl.col("merchant_reference").is_in(refs.implode()))

    tables = {name: _table(tmp_path, name, text) for name, text in SAMPLES.items()}
    # When each is validated alone, and all of them together
    alone = {
        name: validation.validate_to(t, ctx, tmp_path / "alone" / name, 1000, exists)
        for name, t in tables.items()
    }
    small = []
    for name, t in tables.items():
        raw = chunks.one_chunk(t, 1000)
        assert raw is not None
        small.append(validation.Small(t, raw, tmp_path / "together" / name))
    together = dict(zip(tables, validation.validate_many(small, ctx, exists), strict=True))
    # Then each file has the summary and the chunk it would have had alone
    assert together == alone
    for name in tables:
        one = _chunk(tmp_path / "alone" / name)
        many = _chunk(tmp_path / "together" / name)
        assert many.columns == one.columns
        assert many.drop("token").equals(one.drop("token")), name
        assert many["token"].is_null().equals(one["token"].is_null())
        assert many["token"].drop_nulls().n_unique() == many["valid"].sum()
    # And what the rules say of the odd rows is kept per file
    assert alone["bad-rows.csv"].valid == 2  # REF-000010 (first) and REF-000002
    assert alone["few-columns.csv"].unknown_columns == ["shoe_size"]
    assert (alone["exists.csv"].rejected, alone["exists.csv"].exists) == (1, 1)
    existing = _chunk(tmp_path / "together" / "exists.csv")["existing"].to_list()
    assert existing == [500, None]


def test_one_chunk_is_none_for_a_file_of_several_chunks(tmp_path):
    table = _table(tmp_path, "three.csv", invoice_csv([invoice_row(n) for n in range(3)]))
    assert chunks.one_chunk(table, 2) is None
    assert len(chunks.one_chunk(table, 3)) == 3


def test_small_files_are_split_into_even_groups_and_large_ones_go_alone():
    # Given 40 small files claimed together, and a large one
    sizes = [(n, 2_000) for n in range(1, 41)] + [(99, groups.SMALL_FILE_BYTES + 1)]
    # When they are split for 4 workers
    alone, together = groups.split(sizes, workers=4)
    # Then the large file goes alone and the small ones in 4 groups of 10, in order
    assert alone == [99]
    assert together == [list(range(n, n + 10)) for n in (1, 11, 21, 31)]
    # And a burst keeps groups within the maximum, each file in one
    alone, together = groups.split([(n, 100) for n in range(1000)], workers=8)
    assert alone == []
    assert max(map(len, together)) == groups.MAX_GROUP
    assert sorted(n for g in together for n in g) == list(range(1000))
    # And a lone small file, or one left over, is advanced alone
    assert groups.split([(7, 100)], workers=8) == ([7], [])
    assert groups.split([(1, 100), (2, 100)], workers=8) == ([1, 2], [])


def _claim_all(settings, store, contents: dict[str, str]) -> list[int]:
    ids = []
    for name, text in contents.items():
        (settings.inbox / name).write_text(text)
        file_id = claim.claim(settings, store, settings.inbox / name)
        assert file_id is not None
        ids.append(file_id)
    return ids


def test_a_group_ends_each_file_as_it_would_end_alone(settings, store, caplog):
    # Given small files claimed together: good ones, bad rows, one unusable, one empty
    contents = {
        **SAMPLES,
        "no-reference.csv": invoice_csv([invoice_row(50)], header=INVOICE_HEADER[2:]),
        "empty.csv": ",".join(INVOICE_HEADER) + "\n",
    }
    ids = _claim_all(settings, store, contents)
    caplog.set_level(logging.DEBUG, logger="invoice_worker")
    # When one run advances them as a group
    groups.advance_many(Runtime(settings=settings, store=store, kinds=KINDS), ids)
    # Then the usable ones were validated in one query
    (together,) = [r for r in caplog.records if r.getMessage() == "group.validated"]
    assert len(together.fields["files"]) == len(SAMPLES)
    # And each file is final with its own results, and no lease left behind
    rows = {r["name"]: dict(r) for r in store.all("SELECT * FROM files")}
    assert {n: r["state"] for n, r in rows.items()} == {
        **dict.fromkeys(SAMPLES, "processed"),
        "no-reference.csv": "rejected",
        "empty.csv": "rejected",
    }
    assert rows["no-reference.csv"]["error_code"] == "MISSING_COLUMN"
    assert rows["empty.csv"]["error_code"] == "EMPTY_FILE"
    assert all(r["lease_owner"] is None for r in rows.values())
    # (REF-000002 is rejected as good.csv created it first with other content, as it would
    # be after good.csv)
    results = read_results(settings.outbox / "bad-rows.csv.results.csv")
    assert [r["status"] for r in results] == ["CREATED"] + ["REJECTED"] * 4
    assert (
        "REF-000002"
        in store.row(
            "SELECT group_concat(merchant_reference) AS r FROM invoices WHERE file_id = ?",
            (rows["good.csv"]["id"],),
        )["r"]
    )
    # And every created invoice has a number of its own, contiguous within its file
    numbers = store.all("SELECT file_id, invoice_number FROM invoices ORDER BY invoice_number")
    assert len({r["invoice_number"] for r in numbers}) == len(numbers) == 3 + 1 + 2 + 1 + 2
    for file_id in {r["file_id"] for r in numbers}:
        mine = [r["invoice_number"] for r in numbers if r["file_id"] == file_id]
        assert mine == list(range(mine[0], mine[0] + len(mine)))


def test_a_group_leaves_a_file_another_run_holds_to_that_run(settings, store):
    # Given three small files claimed together, the second leased to a live run
    ids = _claim_all(
        settings, store, {f"f{n}.csv": invoice_csv([invoice_row(n)]) for n in (1, 2, 3)}
    )
    holder = f"{leases.HOST}:{os.getpid()}:other"
    assert leases.take_file(store, ids[1], holder, 30, attempt=False)
    # When a group run advances all three
    groups.advance_many(Runtime(settings=settings, store=store, kinds=KINDS), ids)
    # Then the others are processed and the held one is untouched
    assert [files.get(store, i).state for i in ids] == ["processed", "received", "processed"]
    assert files.get(store, ids[1]).lease_owner == holder


def test_a_file_failing_in_a_group_stops_no_other_and_its_error_is_raised(
    settings, store, monkeypatch
):
    # Given three small files claimed together, the results of the second not writable
    ids = _claim_all(
        settings, store, {f"f{n}.csv": invoice_csv([invoice_row(n)]) for n in (1, 2, 3)}
    )
    from worker.kinds.invoices.kind import InvoiceFiles

    write_results = InvoiceFiles.write_results

    def failing(self, rt, file, target, created):
        if file.id == ids[1]:
            raise PermissionError(13, "Permission denied", str(target))
        return write_results(self, rt, file, target, created)

    monkeypatch.setattr(InvoiceFiles, "write_results", failing)
    # When a group run advances them
    with pytest.raises(PermissionError):
        groups.advance_many(Runtime(settings=settings, store=store, kinds=KINDS), ids)
    # Then the others are processed, the failing one waits for the retry, leased by none
    states = [(files.get(store, i).state, files.get(store, i).lease_owner) for i in ids]
    assert states == [("processed", None), ("processing", None), ("processed", None)]
    # And the retry finishes it once the folder can be written
    monkeypatch.setattr(InvoiceFiles, "write_results", write_results)
    groups.advance_many(Runtime(settings=settings, store=store, kinds=KINDS), ids)
    assert files.get(store, ids[1]).state == "processed"
    assert store.row("SELECT count(*) AS n FROM invoices")["n"] == 3


def test_a_burst_dropped_into_the_inbox_is_processed_in_groups(pipeline, settings, store, caplog):
    # Given the running pipeline, and twelve small files renamed into the inbox at once
    caplog.set_level(logging.DEBUG, logger="invoice_worker")
    staged = []
    for n in range(12):
        tmp = settings.inbox / f".burst-{n}.tmp"
        tmp.write_text(invoice_csv([invoice_row(100 + 10 * n + k) for k in range(3)]))
        staged.append(tmp)
    for tmp in staged:
        os.rename(tmp, settings.inbox / f"burst-{tmp.name[7:-4]}.csv")
    # When they are final
    rows = pipeline.wait_final(12)
    # Then every one was processed, with its results, and some were validated together
    assert [r.state for r in rows] == ["processed"] * 12
    assert all((settings.outbox / f"{r.name}.results.csv").exists() for r in rows)
    assert store.row("SELECT count(*) AS n FROM invoices")["n"] == 36
    assert any(r.getMessage() == "group.validated" for r in caplog.records)
