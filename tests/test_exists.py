"""Sending a corrected file again (SPEC 13): a row the same as its invoice is EXISTS."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from helpers import cli, future, invoice_csv, invoice_row, read_results, run_file

from rules.columns import Context
from worker.intake.readers import open_table
from worker.kinds import KINDS
from worker.kinds.context import rules_context
from worker.kinds.invoices.existing import existing_invoices
from worker.kinds.invoices.processing import process_chunk
from worker.kinds.invoices.validation import validate_to
from worker.pipeline.chunks import path as chunk_path
from worker.pipeline.chunks import read as read_chunk
from worker.pipeline.stages import approve
from worker.state import Store

pytestmark = pytest.mark.backends

LINK = "https://pay.example.com/"
EXISTS_ERRORS = "MERCHANT_REFERENCE_EXISTS(merchant_reference)"
#: One expiry for every row here: ``future()`` moves with the clock, and a row written a
#: second later would differ from its first sending.
EXPIRY = future(60)
YEAR = timedelta(days=366)


def row(n: int, **fields: str) -> dict[str, str]:
    return invoice_row(n, **{"request_expiry_date": EXPIRY, **fields})


def results_of(settings, file) -> list[dict[str, str]]:
    return read_results(settings.outbox / f"{file.result_name}.results.csv")


def eml(settings, kind: str):
    paths = sorted(settings.mail.glob(f"*-{kind}.eml"))
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]


def invoice_count(store: Store) -> int:
    return int(store.one("SELECT count(*) AS n FROM invoices")["n"])


def test_the_same_rows_sent_again_are_exists_with_the_first_numbers_and_no_email_again(
    make_pipeline, settings, store, smtp
):
    # Given a file of three rows whose customers asked for an email, processed and sent
    h = make_pipeline(settings.with_(smtp_url=smtp.url, mail_rate=0))
    rows = [row(n, notification_type="EMAIL") for n in (1, 2, 3)]
    first = run_file(h, "march.csv", invoice_csv(rows))
    h.wait_mail()
    assert len(smtp.to("customer1@example.com")) == 1
    # When the same rows come again, in a file of other bytes (CRLF lines)
    second = run_file(h, "march-again.csv", invoice_csv(rows, newline="\r\n"))
    h.wait_mail()
    # Then every row is EXISTS with the first run's number, link, amount and currency
    assert second.state == "processed"
    before, after = results_of(settings, first), results_of(settings, second)
    assert [r["status"] for r in after] == ["EXISTS"] * 3
    keep = ("line_number", "merchant_reference", "invoice_number", "payment_link_url")
    assert [[r[k] for k in keep] for r in after] == [[r[k] for k in keep] for r in before]
    assert [(r["amount"], r["currency"], r["errors"]) for r in after] == [("10000", "USD", "")] * 3
    # And nothing was created, and no customer got a second email
    assert invoice_count(store) == 3
    assert (second.created, second.valid, second.rejected, second.existing) == (0, 0, 0, 3)
    for n in (1, 2, 3):
        assert len(smtp.to(f"customer{n}@example.com")) == 1
    # And the administrators' emails count the rows apart
    validated = smtp.wait_for(1, Subject="march-again.csv: validated")[0]
    processed = smtp.wait_for(1, Subject="march-again.csv: processed")[0]
    assert "validated, 0 of 3 rows valid, 3 already exist" in validated["Subject"]
    assert "rejected" not in validated["Subject"]
    assert "processed, 0 invoices created, 3 already exist" in processed["Subject"]
    assert "Existing:  3" in validated.get_body(("plain",)).get_content()
    assert "Already existing: 3" in processed.get_body(("plain",)).get_content()


def test_a_corrected_file_creates_its_new_rows_and_rejects_only_the_changed_one(
    pipeline, settings, store
):
    # Given three invoices made from a first file
    first = run_file(pipeline, "a.csv", invoice_csv([row(n) for n in (1, 2, 3)]))
    numbers = [r["invoice_number"] for r in results_of(settings, first)]
    # When the file comes again with row 2's amount changed and two rows added
    corrected = [
        row(1),
        row(2, amount="20000"),
        row(3),
        row(4),
        row(5),
    ]
    second = run_file(pipeline, "a-corrected.csv", invoice_csv(corrected))
    # Then the unchanged rows are EXISTS, the changed one is rejected, the new ones created
    results = results_of(settings, second)
    assert [r["status"] for r in results] == ["EXISTS", "REJECTED", "EXISTS", "CREATED", "CREATED"]
    assert [results[0]["invoice_number"], results[2]["invoice_number"]] == [numbers[0], numbers[2]]
    assert results[1]["errors"] == EXISTS_ERRORS
    assert results[1]["invoice_number"] == "" and results[1]["amount"] == "20000"
    assert len({r["invoice_number"] for r in results if r["status"] == "CREATED"}) == 2
    assert (second.created, second.rejected, second.existing) == (2, 1, 2)
    assert invoice_count(store) == 5
    stored = store.one("SELECT amount FROM invoices WHERE merchant_reference = 'REF-000002'")
    assert stored["amount"] == 10000, "the invoice keeps what it was made with"


def test_a_row_is_the_same_after_the_rules_normalisation(pipeline, settings):
    # Given an invoice made from a row with an expiry at +02:00
    first_row = invoice_row(
        1,
        currency="USD",
        language="fr",
        notification_type="NONE",
        request_expiry_date="2031-06-30T14:00:00+02:00",
        link_command="PURCHASE",
    )
    first = run_file(pipeline, "one.csv", invoice_csv([first_row]))
    # When it comes again in other case, with spaces, the same instant in UTC and a
    # notification list that the rules read as NONE
    again = dict(
        first_row,
        currency="usd",
        language=" FR ",
        notification_type="sms, none",
        request_expiry_date="2031-06-30T12:00:00Z",
        customer_email=f"  {first_row['customer_email']}",
        customer_name=f"{first_row['customer_name']}   ",
    )
    second = run_file(pipeline, "two.csv", invoice_csv([again]))
    # Then it is EXISTS, not a rejected reference
    [before] = results_of(settings, first)
    [after] = results_of(settings, second)
    assert (after["status"], after["errors"]) == ("EXISTS", "")
    assert after["invoice_number"] == before["invoice_number"]
    assert (after["amount"], after["currency"]) == ("10000", "USD")


def test_a_blank_account_is_the_same_as_the_default_account_it_stands_for(make_pipeline, settings):
    # Given an invoice made from a row with a blank account, the default one configured
    h = make_pipeline(settings.with_(accounts={"ACC-1": "USD"}, default_account="ACC-1"))
    first = run_file(h, "blank.csv", invoice_csv([row(1, payment_account="")]))
    # When the row comes again naming the default account
    second = run_file(h, "named.csv", invoice_csv([row(1, payment_account="ACC-1")]))
    # Then it is the same invoice
    [before], [after] = results_of(settings, first), results_of(settings, second)
    assert (after["status"], after["invoice_number"]) == ("EXISTS", before["invoice_number"])


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("currency", "RWF"),
        ("language", "ar"),
        ("customer_email", "other@example.com"),
        ("customer_name", ""),
        ("request_expiry_date", future(40)),
        ("notification_type", "EMAIL"),
        ("order_description", "changed"),
        ("link_command", "AUTHORIZATION"),
        ("return_url", "https://shop.example.com/x"),
        ("service_command", "payment_link"),
    ],
)
def test_a_row_that_differs_in_any_column_is_still_merchant_reference_exists(
    pipeline, settings, column, value
):
    # Given an invoice made from a row
    run_file(pipeline, "first.csv", invoice_csv([row(1)]))
    # When the reference comes again with one column changed
    second = run_file(pipeline, "second.csv", invoice_csv([row(1, **{column: value})]))
    # Then it is rejected for its reference
    [result] = results_of(settings, second)
    assert result["status"] == "REJECTED"
    assert EXISTS_ERRORS in result["errors"].split(";")


def test_exists_rows_are_not_failures_for_max_error_rate(make_pipeline, settings, store):
    # Given at most 10% of rows may fail, and nine invoices made
    h = make_pipeline(settings.with_(max_error_rate=0.1))
    rows = [row(n) for n in range(1, 10)]
    run_file(h, "nine.csv", invoice_csv(rows))
    # When they come again with one new row and one bad one (1 of 11 rows fails)
    again = [*rows, row(10), row(11, amount="1.5")]
    second = run_file(h, "eleven.csv", invoice_csv(again))
    # Then the file is processed: the new row created, the bad one rejected
    assert second.state == "processed", second.error_message
    statuses = [r["status"] for r in results_of(settings, second)]
    assert statuses == ["EXISTS"] * 9 + ["CREATED", "REJECTED"]
    assert invoice_count(store) == 10


def test_a_file_with_too_many_errors_still_answers_its_existing_rows(
    make_pipeline, settings, store
):
    # Given two invoices made, and at most a quarter of rows allowed to fail
    h = make_pipeline(settings.with_(max_error_rate=0.25))
    run_file(h, "two.csv", invoice_csv([row(1), row(2)]))
    # When they come again with two bad rows (half the file fails)
    rows = [row(1), row(2), row(3, amount="x"), row(4, amount="")]
    second = run_file(h, "four.csv", invoice_csv(rows))
    # Then the file is rejected whole, and its results still show the existing rows
    assert (second.state, second.error_code) == ("rejected", "TOO_MANY_ERRORS")
    statuses = [r["status"] for r in results_of(settings, second)]
    assert statuses == ["EXISTS", "EXISTS", "REJECTED", "REJECTED"]
    assert results_of(settings, second)[0]["payment_link_url"].startswith("http")
    assert "2 of 4 rows failed" in second.error_message
    assert invoice_count(store) == 2


def test_a_reference_repeated_in_the_file_is_a_duplicate_after_its_existing_row(pipeline, settings):
    run_file(pipeline, "first.csv", invoice_csv([row(1)]))
    second = run_file(pipeline, "second.csv", invoice_csv([row(1), row(1)]))
    results = results_of(settings, second)
    assert [r["status"] for r in results] == ["EXISTS", "REJECTED"]
    assert results[1]["errors"] == "DUPLICATE_MERCHANT_REFERENCE(merchant_reference)"


def test_a_reference_invoiced_between_validation_and_processing_is_settled_at_processing(
    make_pipeline, settings, store
):
    # Given two files validated while their references were free, waiting for approval
    h = make_pipeline(settings.with_(require_approval=True))
    ours = [row(1), row(2), row(3)]
    theirs = [row(1), row(2, amount="777")]
    first = run_file(h, "theirs.csv", invoice_csv(theirs))
    second = run_file(h, "ours.csv", invoice_csv(ours))
    assert (first.state, second.state) == ("awaiting_approval", "awaiting_approval")
    # When the other file is processed first, then ours
    approve(store, first.id)
    h.wait_final(2, states=frozenset({"processed", "awaiting_approval"}))
    approve(store, second.id)
    files = h.wait_final(2, states=frozenset({"processed"}))
    # Then our same row is EXISTS with their invoice, the changed one rejected late
    theirs_results = results_of(settings, files[0])
    results = results_of(settings, files[1])
    assert [r["status"] for r in results] == ["EXISTS", "REJECTED", "CREATED"]
    assert results[0]["invoice_number"] == theirs_results[0]["invoice_number"]
    assert results[0]["payment_link_url"] == theirs_results[0]["payment_link_url"]
    assert results[1]["errors"] == EXISTS_ERRORS
    assert (files[1].created, files[1].existing) == (1, 1)
    h.wait_mail()
    [processed] = [m for m in eml(settings, "processed") if "ours.csv" in m["Subject"]]
    assert "1 invoice created, 1 already exists, 1 row rejected" in processed["Subject"]


@pytest.fixture(params=["bound", "staged"])
def write_path(request, monkeypatch) -> str:
    """Chunks bound row by row, and through a staging file."""
    from worker.state import staging

    monkeypatch.setattr(staging, "STAGE_MIN_ROWS", 10**9 if request.param == "bound" else 1)
    return request.param


def validated(
    tmp_path: Path, store: Store, name: str, rows: list[dict[str, str]], ctx: Context | None = None
) -> Path:
    source = tmp_path / name
    source.write_text(invoice_csv(rows))
    folder = tmp_path / f"{name}.work"
    validate_to(
        open_table(source, folder, KINDS.signatures),
        ctx or rules_context((), {}, None),
        folder,
        100,
        existing_invoices(store),
    )
    return folder


def test_an_existing_row_is_not_checked_again_once_its_expiry_has_passed(
    store: Store, tmp_path: Path
):
    # Given an invoice made from a row
    made = validated(tmp_path, store, "made.csv", [row(1)])
    assert process_chunk(store, 1, 0, chunk_path(made, 0), 100, LINK) == 1
    # When the row comes again after its expiry (and a new row that expired too)
    later = dataclasses.replace(rules_context((), {}, None), now=datetime.now(UTC) + YEAR)
    again = validated(tmp_path, store, "again.csv", [row(1), row(2)], later)
    # Then it is the invoice that exists, and only the new row is EXPIRY_IN_PAST
    chunk = read_chunk(chunk_path(again, 0))
    assert chunk["existing"].to_list() == [100, None]
    assert chunk["errors"].to_list() == ["", "EXPIRY_IN_PAST(request_expiry_date)"]
    assert chunk["valid"].to_list() == [False, False]


def test_existing_rows_commit_with_their_chunk_once_however_often_it_runs(
    store: Store, tmp_path: Path, write_path: str
):
    # Given REF-1 invoiced, and a file naming it and a new reference validated after
    made = validated(tmp_path, store, "made.csv", [row(1)])
    assert process_chunk(store, 1, 0, chunk_path(made, 0), 100, LINK) == 1
    mine = validated(tmp_path, store, "mine.csv", [row(1), row(2)])
    # And REF-2 invoiced, with the same content, after that validation
    late = validated(tmp_path, store, "late.csv", [row(2)])
    assert process_chunk(store, 3, 0, chunk_path(late, 0), 300, LINK) == 1
    # When its chunk is processed, and processed again
    assert process_chunk(store, 2, 0, chunk_path(mine, 0), 200, LINK) == 0
    assert process_chunk(store, 2, 0, chunk_path(mine, 0), 200, LINK) is None
    # Then both rows are recorded as existing, once, with the chunk; nothing is created
    rows = store.all("SELECT * FROM existing_rows WHERE file_id = 2 ORDER BY line_number")
    assert [tuple(r) for r in rows] == [(2, 2, 100), (2, 3, 300)]
    assert not store.all("SELECT * FROM late_rejections")
    assert invoice_count(store) == 2


def test_status_and_validate_count_existing_rows_apart(tmp_path):
    # Given a home where one invoice was made, by the real worker
    home = tmp_path
    (home / "inbox").mkdir()
    (home / "inbox" / "a.csv").write_text(invoice_csv([row(1)]))
    assert cli("run", "--once", home=home).returncode == 0
    # When a file naming it and a new row is validated, then processed
    (home / "b.csv").write_text(invoice_csv([row(1), row(2)]))
    checked = cli("validate", "b.csv", home=home)
    (home / "b.csv").rename(home / "inbox" / "b.csv")
    assert cli("run", "--once", home=home).returncode == 0
    # Then validate says the row exists and exits 0: it is not an error
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 rows, 1 valid, 1 exist already (EXISTS), 0 with errors" in checked.stdout
    # And status counts it apart from valid, rejected and created
    listing = json.loads(cli("status", "--json", home=home).stdout)
    b = next(f for f in listing if f["name"] == "b.csv")
    assert (b["rows"], b["valid"], b["rejected"], b["existing"], b["created"]) == (2, 1, 0, 1, 1)
    table = cli("status", home=home).stdout.splitlines()
    assert "EXISTS" in table[0].split()
    line = next(t for t in table if t.endswith("b.csv"))
    assert line.split()[3:8] == ["2", "1", "0", "1", "1"]
