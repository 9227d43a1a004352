"""The command line, run as the real process."""

from __future__ import annotations

import csv
import io
import json

import pytest
from helpers import cli, invoice_csv, invoice_row

from worker.cli import main


@pytest.fixture
def home(tmp_path):
    return tmp_path


def test_template_invoices_validates_cleanly(home):
    # Given the template printed by the command
    template = cli("template", "invoices", home=home)
    assert template.returncode == 0
    (home / "t.csv").write_text(template.stdout)
    # When it is validated
    checked = cli("validate", "t.csv", home=home)
    # Then every row is valid
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rows, 1 valid, 0 with errors" in checked.stdout


@pytest.mark.parametrize("kind", ["invoices", "batches", "payments"])
def test_every_template_has_a_header_and_an_example_row(home, kind):
    out = list(csv.reader(io.StringIO(cli("template", kind, home=home).stdout)))
    assert len(out) == 2
    assert len(out[0]) == len(out[1])


def test_validate_exits_1_and_names_file_line_and_column_when_rows_are_invalid(home):
    (home / "march.csv").write_text(invoice_csv([invoice_row(1), invoice_row(2, amount="1.50")]))
    checked = cli("validate", "march.csv", home=home)
    assert checked.returncode == 1
    assert "march.csv:3: amount: INVALID_AMOUNT" in checked.stdout


def test_validate_exits_2_when_the_file_is_unusable(home):
    (home / "x.csv").write_text("name,age\nada,36\n")
    checked = cli("validate", "x.csv", home=home)
    assert checked.returncode == 2
    assert "x.csv:1: UNKNOWN_FILE_KIND" in checked.stderr


def test_validate_names_columns_it_ignores(home):
    header = (*invoice_row(1), "erp_id")
    (home / "x.csv").write_text(invoice_csv([invoice_row(1, erp_id="9")], header))
    checked = cli("validate", "x.csv", home=home)
    assert checked.returncode == 0
    assert "columns ignored: erp_id" in checked.stdout


def test_validate_writes_nothing(home):
    (home / "x.csv").write_text(invoice_csv([invoice_row(1)]))
    cli("validate", "x.csv", home=home)
    assert sorted(p.name for p in home.iterdir()) == ["x.csv"]


def test_status_lists_files_with_states_and_counts(home):
    (home / "inbox").mkdir()
    (home / "inbox" / "a.csv").write_text(invoice_csv([invoice_row(1), invoice_row(2, amount="")]))
    assert cli("run", "--once", home=home).returncode == 0
    [row] = json.loads(cli("status", "--json", home=home).stdout)
    assert row["name"] == "a.csv"
    assert row["state"] == "processed"
    assert (row["rows"], row["valid"], row["rejected"], row["created"]) == (2, 1, 1, 1)
    text = cli("status", home=home).stdout
    assert "processed" in text and "a.csv" in text


def test_approve_releases_a_file_waiting_for_approval(home):
    (home / "inbox").mkdir()
    (home / "inbox" / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    env = {"INVOICE_WORKER_REQUIRE_APPROVAL": "true"}
    assert cli("run", "--once", home=home, **env).returncode == 0
    [row] = json.loads(cli("status", "--json", home=home).stdout)
    assert row["state"] == "awaiting_approval"
    approved = cli("approve", str(row["id"]), home=home)
    assert approved.returncode == 0, approved.stderr
    assert cli("approve", str(row["id"]), home=home).returncode == 1
    assert cli("run", "--once", home=home, **env).returncode == 0
    [row] = json.loads(cli("status", "--json", home=home).stdout)
    assert (row["state"], row["created"]) == ("processed", 1)


def test_a_bad_configuration_is_a_clear_error(home):
    (home / "invoice-worker.toml").write_text("max_error_rate = 2\n")
    out = cli("status", home=home)
    assert out.returncode == 1
    assert "max_error_rate" in out.stderr


def test_every_command_is_documented():
    for name, command in main.commands.items():
        assert command.help, name
