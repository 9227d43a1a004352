"""The benchmark's input generator keeps its promises: the same seed gives the same bytes,
exactly 1% of rows are bad and are exactly the rows the real validator rejects, each with
the code it was made to get, and the realistic rows look like an ERP's (random unique
references of two shapes, a unique expiry instant per row with mixed offsets, long quoted
descriptions, optional columns filled at their rates). The PostgreSQL floor loads those
rows, shaped as ``invoices`` rows, as they are."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bench.floors import floor_copy
from bench.generate import (
    BAD_KINDS,
    BAD_SHARE,
    bad_rows,
    invoice_texts,
    invoices_text,
    write_invoices,
)
from bench.pairs import valid_rows
from bench.pg_cases import Postgres
from bench.realistic import FILL, OFFSETS, UUID_SHARE
from worker import kinds as checking
from worker.settings import Settings
from worker.state.invoices import INSERT_COLUMNS

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EXPIRY_KINDS = {"past expiry", "bad date", "expiry without offset"}


def read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, dict]:
    path = tmp_path_factory.mktemp("gen") / "realistic.csv"
    bad = write_invoices(path, 50_000, seed=11)
    return read(path), bad


@pytest.mark.parametrize("shape", ["realistic", "sequential"])
def test_the_same_seed_writes_the_same_file(tmp_path: Path, shape: str) -> None:
    # Given two files written with one seed, and one with another
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_invoices(a, 3000, seed=7, shape_name=shape)
    write_invoices(b, 3000, seed=7, shape_name=shape)
    write_invoices(c, 3000, seed=8, shape_name=shape)
    # Then the first two are identical, and the third is not
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_the_bytes_do_not_depend_on_how_the_file_is_sliced(tmp_path: Path) -> None:
    whole, sliced = tmp_path / "whole.csv", tmp_path / "sliced.csv"
    write_invoices(whole, 5000, seed=2)
    write_invoices(sliced, 5000, seed=2, slice_rows=777)
    assert whole.read_bytes() == sliced.read_bytes()


@pytest.mark.parametrize("rows", [10, 99, 150, 10_000, 1_234_567])
def test_exactly_one_percent_of_rows_are_bad_never_the_first(rows: int) -> None:
    bad = bad_rows(rows, seed=5)
    assert len(bad) == round(rows * BAD_SHARE)
    assert 0 not in bad


def test_every_kind_of_bad_row_occurs_and_duplicates_repeat_an_earlier_good_row() -> None:
    bad = bad_rows(100_000, seed=5)
    assert set(Counter(b.kind.name for b in bad.values())) == {k.name for k in BAD_KINDS}
    duplicates = [(i, b.source) for i, b in bad.items() if b.kind.value is None]
    assert duplicates
    assert all(source < i and source not in bad for i, source in duplicates)


@pytest.mark.parametrize(("shape", "rows"), [("realistic", 30_000), ("sequential", 5000)])
def test_the_validator_rejects_exactly_the_bad_rows(
    settings: Settings, tmp_path: Path, shape: str, rows: int
) -> None:
    # Given a generated file, split over several chunks
    path = tmp_path / "invoices.csv"
    bad = write_invoices(path, rows, seed=3, shape_name=shape)
    # When the product validates it
    report = checking.check(settings.with_(chunk_rows=4000), path, tmp_path / "work")
    # Then every bad row, and no other, is rejected, with the code its kind promises
    rejected = {line - 2: errors for line, errors in report.errors}
    assert report.rows == rows
    assert rejected == {i: b.error for i, b in bad.items()}
    if shape == "realistic":
        assert {b.kind.name for b in bad.values()} == {k.name for k in BAD_KINDS}


def test_references_are_unique_and_of_both_shapes(
    realistic: tuple[pl.DataFrame, dict],
) -> None:
    frame, bad = realistic
    good = frame.filter(~pl.int_range(pl.len()).is_in(list(bad)))
    refs = good["merchant_reference"]
    assert refs.n_unique() == len(good)
    uuids = refs.str.contains(UUID.pattern)
    letters = refs.str.contains(r"^INV-[A-Z]{14}$")
    assert (uuids | letters).all()
    assert abs(uuids.mean() - UUID_SHARE) < 0.02
    # Random, not sequential: sorted order is not file order.
    assert not refs.filter(letters).is_sorted()


def test_every_row_has_its_own_expiry_instant_with_offsets_from_minus_5_to_plus_5_30(
    realistic: tuple[pl.DataFrame, dict],
) -> None:
    frame, bad = realistic
    skip = {i for i, b in bad.items() if b.kind.name in EXPIRY_KINDS}
    texts = [t for n, t in enumerate(frame["request_expiry_date"]) if n not in skip]
    instants = [datetime.fromisoformat(t) for t in texts]
    assert len(set(instants)) == len(instants)
    offsets = Counter(i.utcoffset() for i in instants)
    assert min(offsets) == timedelta(hours=-5)
    assert max(offsets) == timedelta(hours=5, minutes=30)
    assert len(offsets) == len({minutes for _, minutes in OFFSETS})
    assert any(t.endswith("Z") for t in texts) and any("." in t for t in texts)


def test_descriptions_are_long_and_quoted_with_commas(
    realistic: tuple[pl.DataFrame, dict], tmp_path: Path
) -> None:
    frame, bad = realistic
    long = {i for i, b in bad.items() if b.kind.name == "long description"}
    described = frame.with_row_index("n").filter(
        pl.col("order_description").is_not_null() & ~pl.col("n").is_in(list(long))
    )["order_description"]
    assert described.str.len_chars().max() == 150
    assert described.str.len_chars().mean() > 90
    assert described.str.contains(",").all()
    assert described.str.contains('"').any()
    # As the file holds them: quoted, quotes doubled, and read back by csv unchanged.
    text = invoices_text(200, seed=4, prefix="Q")
    assert '""' in text
    rows = list(csv.DictReader(text.splitlines()))
    assert all("," in r["order_description"] for r in rows if r["order_description"])


def test_optional_columns_are_filled_at_their_rates(
    realistic: tuple[pl.DataFrame, dict],
) -> None:
    frame, _ = realistic
    for column, share in FILL.items():
        filled = frame[column].is_not_null().mean()
        assert abs(filled - share) < 0.02, column


def test_sms_files_give_every_good_row_a_phone() -> None:
    text = invoices_text(500, seed=1, prefix="S", notification="SMS")
    rows = list(csv.DictReader(text.splitlines()))
    bad = bad_rows(500, seed=1)
    phoneless = {i for i, b in bad.items() if b.kind.column == "customer_phone"}
    assert all(r["customer_phone"] for n, r in enumerate(rows) if n not in phoneless)


def test_small_files_share_no_reference_and_each_has_its_own_bad_rows() -> None:
    texts = invoice_texts(300, 10, seed=1, prefix="LAT")
    refs = [r["merchant_reference"] for t in texts for r in csv.DictReader(t.splitlines())]
    assert all(t.count("\n") == 11 for t in texts)
    assert len(set(refs)) == len(refs) == 3000
    # A file of 200 rows has its 2 bad rows, each with its kind's value.
    (text,) = invoice_texts(1, 200, seed=9, prefix="B")
    rows = list(csv.DictReader(text.splitlines()))
    bad = bad_rows(200, seed=9)
    assert len(bad) == 2
    for i, b in bad.items():
        if b.kind.value is not None:
            assert rows[i][b.kind.column] == b.kind.value(i)
        else:
            assert rows[i]["merchant_reference"] == rows[b.source]["merchant_reference"]


def test_the_copy_floor_loads_every_valid_row_into_the_product_schema_as_it_is(
    tmp_path: Path, postgres: Any
) -> None:
    # Given a realistic file's valid rows shaped as invoices rows (quotes, commas,
    # accents, blank optional columns), and a database with the product's schema
    import psycopg
    from polars.testing import assert_frame_equal

    source = tmp_path / "invoices.csv"
    write_invoices(source, 2_000)
    rows_file = valid_rows(source, tmp_path / "valid.parquet")
    expected = pl.read_parquet(rows_file).select(INSERT_COLUMNS)
    with Postgres(postgres).database("copy", migrate=True) as url:
        # When the floor loads them with COPY
        counts = floor_copy(url, rows_file)
        with psycopg.connect(url) as conn:
            loaded = conn.execute(
                f"SELECT {', '.join(INSERT_COLUMNS)} FROM invoices ORDER BY invoice_number"
            ).fetchall()
    # Then every row is there with every value as it was, NULL where it was null
    assert counts == {"rows": expected.height} and expected.height > 1_900
    got = pl.DataFrame(loaded, schema=list(INSERT_COLUMNS), orient="row", infer_schema_length=None)
    assert_frame_equal(got.cast(expected.schema), expected.sort("invoice_number"))
