"""Workbooks (SPEC 12): read like CSV, numbered like the sheet, cells typed as promised;
`validate` and `template --format xlsx` on real files and the real process."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

import polars as pl
import pytest
from corpus import GOOD_SHEET
from helpers import INVOICE_HEADER, cli, invoice_csv, invoice_row, read_results
from openpyxl import load_workbook
from sheetfiles import Text, ods, ods_date, rows_of, xlsx

from worker.intake import readers
from worker.kinds import KINDS, templates

RESULT_KEYS = ("line_number", "status", "errors", "amount", "currency")


def _read(tmp_path, name: str, content: bytes, timezone: str = "UTC") -> pl.DataFrame:
    path = tmp_path / name
    path.write_bytes(content)
    table = readers.open_table(path, tmp_path / "work", KINDS.signatures, timezone=timezone)
    return table.scan().collect()


def test_a_workbook_gets_the_same_results_as_the_same_rows_in_csv(pipeline, settings):
    # Given the same rows, some invalid, as CSV and as a workbook (other references)
    def rows(prefix: str) -> list[dict[str, str]]:
        return [
            invoice_row(1, merchant_reference=f"{prefix}-1"),
            invoice_row(2, merchant_reference=f"{prefix}-2", amount="1.50"),
            invoice_row(3, merchant_reference=f"{prefix}-3", currency="DOLLARS"),
            invoice_row(4, merchant_reference=f"{prefix}-4", customer_email="not-an-email"),
        ]

    pipeline.drop("march.csv", invoice_csv(rows("C")))
    pipeline.drop("march.xlsx", xlsx(rows_of(INVOICE_HEADER, rows("X"))))
    # When both are processed
    files = pipeline.wait_final(2, timeout=60)
    assert {f.state for f in files} == {"processed"}
    # Then their results agree line for line
    by_name = {
        name: read_results(settings.outbox / f"{name}.results.csv")
        for name in ("march.csv", "march.xlsx")
    }
    as_csv, as_xlsx = ([{k: r[k] for k in RESULT_KEYS} for r in v] for v in by_name.values())
    assert as_xlsx == as_csv
    assert [r["status"] for r in as_xlsx] == ["CREATED", "REJECTED", "REJECTED", "REJECTED"]


def test_line_numbers_are_the_sheet_rows_with_empty_rows_kept(pipeline, settings):
    # Given a sheet with empty rows 3 and 4, and a bad amount in row 6
    good, bad = invoice_row(1), invoice_row(2, amount="12.5")
    sheet = rows_of(INVOICE_HEADER, [good])
    sheet += [[], [], rows_of(INVOICE_HEADER, [invoice_row(3)])[1]]
    sheet += [rows_of(INVOICE_HEADER, [bad])[1]]
    pipeline.drop("gaps.xlsx", xlsx(sheet))
    # When it is processed
    [file] = pipeline.wait_final(timeout=60)
    # Then the rejected row is named by its sheet row, and the empty rows are no rows
    results = read_results(settings.outbox / "gaps.xlsx.results.csv")
    assert [(r["line_number"], r["status"]) for r in results] == [
        ("2", "CREATED"),
        ("5", "CREATED"),
        ("6", "REJECTED"),
    ]
    assert (file.rows, file.rejected) == (3, 1)


def _sheet(*extra_rows: dict[str, object]) -> list[list[object]]:
    """An invoice sheet with extra columns a, b, c, d holding the cells under test."""
    header = (*INVOICE_HEADER, "a", "b", "c", "d")
    return rows_of(header, [invoice_row(n, **row) for n, row in enumerate(extra_rows, 1)])


def test_cells_become_text_as_spec_12_says_in_a_non_utc_zone(tmp_path):
    # Given number, date and text cells of every sort
    sheet = _sheet(
        {"a": 10000, "b": datetime(2031, 1, 15, 10, 0), "c": "1.50", "d": 0.1 + 0.2},
        {
            "a": 12345678901234,
            "b": datetime(2031, 7, 1, 10, 0, 0, 250000),
            "c": Text("2031-01-01 10:00:00"),
            "d": 1e20,
        },
        {"a": -3, "b": date(2031, 2, 3), "c": Text("=HYPERLINK(1)"), "d": True},
    )
    # When it is read with spreadsheet_timezone America/New_York
    frame = _read(tmp_path, "cells.xlsx", xlsx(sheet), timezone="America/New_York")
    # Then whole numbers are integers, dates carry the zone's offset at that instant, and
    # text cells (even date-like or formula-like ones) are as written
    assert frame.select("line_number", "a", "b", "c", "d").rows() == [
        (2, "10000", "2031-01-15T10:00:00-05:00", "1.50", "0.3"),
        (
            3,
            "12345678901234",
            "2031-07-01T10:00:00.250-04:00",
            "2031-01-01 10:00:00",
            "100000000000000000000",
        ),
        (4, "-3", "2031-02-03T00:00:00-05:00", "=HYPERLINK(1)", "TRUE"),
    ]


def test_an_ods_reads_its_cells_the_same_way(tmp_path):
    sheet = _sheet(
        {"a": 10000, "b": ods_date("2031-01-15T10:00:00"), "c": "2031-01-15T10:00:00"},
        {"a": 2.5, "b": ods_date("2031-01-15"), "c": "x"},
    )
    sheet.insert(2, [])
    frame = _read(tmp_path, "cells.ods", ods(sheet), timezone="Africa/Kigali")
    assert frame.select("line_number", "a", "b", "c").rows() == [
        (2, "10000", "2031-01-15T10:00:00+02:00", "2031-01-15T10:00:00"),
        (3, None, None, None),
        (4, "2.5", "2031-01-15T00:00:00+02:00", "x"),
    ]


def test_a_text_cell_that_looks_like_a_date_stays_text_and_is_refused_without_offset(tmp_path):
    # Given two rows: a date cell, and a text cell with the very same wall time
    row = rows_of(INVOICE_HEADER, [invoice_row(1), invoice_row(2)])
    expiry = INVOICE_HEADER.index("request_expiry_date")
    row[1][expiry] = datetime(2031, 1, 1, 10, 0)
    row[2][expiry] = Text("2031-01-01 10:00:00")
    (tmp_path / "dates.xlsx").write_bytes(xlsx(row))
    # When it is validated
    checked = cli("validate", "dates.xlsx", home=tmp_path)
    # Then only the text cell is refused: it names no offset
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "dates.xlsx:3: request_expiry_date: INVALID_DATE" in checked.stdout
    assert "dates.xlsx:2:" not in checked.stdout


def test_formula_like_text_from_a_workbook_reaches_the_results_escaped(pipeline, settings):
    rows = rows_of(INVOICE_HEADER, [invoice_row(1)])
    rows[1][INVOICE_HEADER.index("merchant_reference")] = Text('=HYPERLINK("http://x")')
    pipeline.drop("evil.xlsx", xlsx(rows))
    pipeline.wait_final(timeout=60)
    [result] = read_results(settings.outbox / "evil.xlsx.results.csv")
    assert result["merchant_reference"] == '\'=HYPERLINK("http://x")'
    assert result["status"] == "REJECTED"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (xlsx(GOOD_SHEET), 0),
        (xlsx(rows_of(INVOICE_HEADER, [invoice_row(1, amount="1.5")])), 1),
        (xlsx([["=1+1"]]), 2),
        (b"PK\x03\x04 not really", 2),
    ],
    ids=["valid", "invalid-row", "formula", "corrupt"],
)
def test_validate_exits_0_1_or_2_on_a_workbook(tmp_path, content, code):
    (tmp_path / "march.xlsx").write_bytes(content)
    checked = cli("validate", "march.xlsx", home=tmp_path)
    assert checked.returncode == code, checked.stdout + checked.stderr
    if code == 2:
        assert checked.stderr.startswith("march.xlsx")
        assert "UNREADABLE_FILE" in checked.stderr


def test_validate_names_the_formula_cell(tmp_path):
    rows = [list(r) for r in GOOD_SHEET]
    rows[2][2] = "=SUM(1,2)"
    (tmp_path / "f.xlsx").write_bytes(xlsx(rows))
    checked = cli("validate", "f.xlsx", home=tmp_path)
    assert checked.returncode == 2
    assert "f.xlsx:3: UNREADABLE_FILE: cell C3 of the first sheet holds a formula" in checked.stderr


@pytest.mark.parametrize("kind", KINDS.names)
def test_template_xlsx_has_a_frozen_header_dropdowns_and_validates(tmp_path, kind):
    # Given the workbook template written by the command
    made = cli("template", kind, "--format", "xlsx", "--output", "t.xlsx", home=tmp_path)
    assert made.returncode == 0, made.stderr
    # Then it has the CSV template's header and row, its header frozen
    book = load_workbook(tmp_path / "t.xlsx")
    sheet = book.worksheets[0]
    csv_rows = list(csv.reader(io.StringIO(cli("template", kind, home=tmp_path).stdout)))
    cells = [
        ["" if c is None else str(c) for c in row] for row in sheet.iter_rows(values_only=True)
    ]
    assert cells[0] == csv_rows[0]
    assert sheet.freeze_panes == "A2"
    # And every fixed-value column offers its values as a dropdown
    fixed = set(templates.choices(_settings(tmp_path))) & set(csv_rows[0])
    dropdowns = {
        csv_rows[0][sheet[str(v.sqref).split(":")[0]].column - 1]
        for v in sheet.data_validations.dataValidation
        if v.type == "list"
    }
    assert dropdowns == fixed
    # And it reads as its kind (payments and batches name invoices that do not exist here)
    checked = cli("validate", "t.xlsx", home=tmp_path)
    assert checked.returncode in ((0,) if kind == "invoices" else (0, 1)), checked.stderr
    assert f"{kind} file, 1 " in checked.stdout


def test_every_value_a_dropdown_offers_is_accepted(tmp_path):
    offered = templates.choices(_settings(tmp_path))
    rows = []
    for column, options in offered.items():
        for option in options:
            phone = {"customer_phone": "+250788000000"}
            rows.append(invoice_row(len(rows) + 1, **{column: option}, **phone))
    (tmp_path / "all.xlsx").write_bytes(xlsx(rows_of(INVOICE_HEADER, rows)))
    checked = cli("validate", "all.xlsx", home=tmp_path)
    assert checked.returncode == 0, checked.stdout


def test_template_output_without_xlsx_writes_the_csv_there(tmp_path):
    made = cli("template", "invoices", "--output", "t.csv", home=tmp_path)
    assert made.returncode == 0 and made.stdout == ""
    assert (tmp_path / "t.csv").read_text() == cli("template", "invoices", home=tmp_path).stdout


def test_template_xlsx_without_output_is_a_usage_error(tmp_path):
    made = cli("template", "invoices", "--format", "xlsx", home=tmp_path)
    assert made.returncode == 2
    assert "--output" in made.stderr


def _settings(home):
    from worker.settings import load

    return load(env={}, home=home)


def test_a_dropped_workbook_takes_its_date_cells_in_spreadsheet_timezone(
    make_pipeline, settings, store
):
    # Given a pipeline whose spreadsheets come from Kolkata, and an expiry typed as a date
    h = make_pipeline(settings.with_(spreadsheet_timezone="Asia/Kolkata"))
    row = invoice_row(1, request_expiry_date=datetime(2031, 1, 15, 10, 0))
    h.drop("dated.xlsx", xlsx(rows_of(INVOICE_HEADER, [row])))
    [file] = h.wait_final()
    # Then the invoice expires at that wall time in that zone (+05:30)
    assert file.state == "processed" and file.created == 1
    stored = store.one("SELECT expires_at FROM invoices")["expires_at"]
    assert datetime.fromisoformat(stored) == datetime.fromisoformat("2031-01-15T10:00:00+05:30")
