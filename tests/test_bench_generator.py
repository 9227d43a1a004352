"""The benchmark's input generator: the same seed gives the same bytes, and its bad rows
are exactly the rows the validator rejects, each with the code it was made to get."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.generate import BAD_KINDS, BAD_SHARE, bad_rows, invoices_text, write_invoices
from worker import kinds as checking
from worker.settings import Settings


def test_the_same_seed_writes_the_same_file(tmp_path: Path) -> None:
    # Given two files written with one seed, and one with another
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_invoices(a, 3000, seed=7)
    write_invoices(b, 3000, seed=7)
    write_invoices(c, 3000, seed=8)
    # Then the first two are identical, and the third is not
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_about_one_percent_of_rows_are_bad_in_every_kind() -> None:
    bad = bad_rows(100_000, seed=5)
    assert abs(len(bad) - 100_000 * BAD_SHARE) <= 1
    assert 0 not in bad
    assert set(Counter(k.name for k in bad.values())) == {k.name for k in BAD_KINDS}


def test_the_validator_rejects_exactly_the_bad_rows(settings: Settings, tmp_path: Path) -> None:
    # Given a generated file, split over several chunks
    path = tmp_path / "invoices.csv"
    bad = write_invoices(path, 5000, seed=3)
    # When the product validates it
    report = checking.check(settings.with_(chunk_rows=1500), path, tmp_path / "work")
    # Then every bad row, and no other, is rejected, with the code its kind promises
    rejected = {line - 2: errors for line, errors in report.errors}
    assert report.rows == 5000
    assert rejected == {i: kind.error for i, kind in bad.items()}


def test_small_files_differ_by_prefix() -> None:
    one = invoices_text(10, seed=1, prefix="A")
    two = invoices_text(10, seed=1, prefix="B")
    assert one.count("\n") == 11
    assert one != two
