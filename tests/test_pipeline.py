"""Dropped files end in archive/ or rejected/ with a result, through real Redis and workers."""

from __future__ import annotations

import json
from email import message_from_bytes, policy

import pytest
from helpers import invoice_csv, invoice_row, read_results

import worker.pipeline.stages
from worker.errors import StateError
from worker.intake import claim
from worker.kinds import KINDS
from worker.pipeline.runtime import Runtime
from worker.pipeline.stages import advance, approve
from worker.state import files

pytestmark = pytest.mark.backends


def eml(settings, kind: str):
    paths = sorted(settings.mail.glob(f"*-{kind}.eml"))
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]


def test_a_valid_file_creates_its_invoices_and_reports(pipeline, settings, store):
    # Given a file with two good rows and one bad one
    rows = [invoice_row(1), invoice_row(2, amount="12.50"), invoice_row(3, currency="RWF")]
    pipeline.drop("march.csv", invoice_csv(rows))
    # When the pipeline has run
    [file] = pipeline.wait_final()
    pipeline.wait_mail()
    # Then the file is processed, archived, and answered line by line
    assert file.state == "processed"
    assert (settings.archive / "march.csv").exists()
    assert not any(settings.inbox.glob("*.csv"))
    results = read_results(settings.outbox / "march.csv.results.csv")
    assert [r["line_number"] for r in results] == ["2", "3", "4"]
    assert [r["status"] for r in results] == ["CREATED", "REJECTED", "CREATED"]
    assert results[1]["errors"] == "INVALID_AMOUNT(amount)"
    assert results[1]["amount"] == "12.50" and results[1]["invoice_number"] == ""
    invoices = store.all("SELECT * FROM invoices ORDER BY line_number")
    assert [i["merchant_reference"] for i in invoices] == ["REF-000001", "REF-000003"]
    assert [str(i["invoice_number"]) for i in invoices] == [
        results[0]["invoice_number"],
        results[2]["invoice_number"],
    ]
    assert results[0]["payment_link_url"] == invoices[0]["payment_link_url"]
    assert len(invoices[0]["token"]) == 32  # 128 bits, hex
    assert all(i["status"] == "NEW" and i["type"] == "SINGLE" for i in invoices)
    # And the administrators got the validation and processing emails
    [validated] = eml(settings, "validated")
    [processed] = eml(settings, "processed")
    assert "2 of 3 rows valid" in validated["Subject"]
    assert "2 invoices created" in processed["Subject"]
    attachment = next(validated.iter_attachments())
    assert attachment.get_content().splitlines()[1] == "3,REF-000002,INVALID_AMOUNT(amount)"
    assert "$100.00" in processed.get_body(("plain",)).get_content()
    assert "RWF" in processed.get_body(("plain",)).get_content()


def test_a_duplicate_file_is_rejected_once_naming_the_first(pipeline, settings):
    content = invoice_csv([invoice_row(1)])
    pipeline.drop("a.csv", content)
    pipeline.wait_final(1)
    pipeline.drop("b.csv", content)
    files = pipeline.wait_final(2)
    assert [f.state for f in files] == ["processed", "rejected"]
    assert [f.lease_owner for f in files] == [None, None]
    error = json.loads((settings.outbox / "b.csv.error.json").read_text())
    assert error["code"] == "DUPLICATE_FILE"
    assert "a.csv" in error["message"]
    assert (settings.rejected / "b.csv").read_text() == content


# Few references are looked up with IN (...), many through a temp table: both ways.
@pytest.mark.parametrize("rows", [2, 1200])
def test_a_reference_that_exists_is_rejected_in_a_later_file(pipeline, settings, rows):
    pipeline.drop("a.csv", invoice_csv([invoice_row(1)]))
    pipeline.wait_final(1)
    later = [invoice_row(1, amount="20000")] + [invoice_row(n) for n in range(2, rows + 1)]
    pipeline.drop("b.csv", invoice_csv(later))
    pipeline.wait_final(2)
    results = read_results(settings.outbox / "b.csv.results.csv")
    assert results[0]["errors"] == "MERCHANT_REFERENCE_EXISTS(merchant_reference)"
    assert {r["status"] for r in results[1:]} == {"CREATED"}
    assert len(results) == rows


@pytest.mark.parametrize(
    ("content", "code", "line"),
    [
        (b"", "EMPTY_FILE", None),
        (b"  \r\n\r\n", "EMPTY_FILE", None),
        (invoice_csv([]).encode(), "EMPTY_FILE", 2),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "UNREADABLE_FILE", 3),
        (b"name,age\nada,36\n", "UNKNOWN_FILE_KIND", 1),
        (b"merchant_reference,amount\nR1,100\n", "MISSING_COLUMN", 1),
        (invoice_csv([invoice_row(1)]).encode() + b"\xff\xfe bad bytes\n", "UNREADABLE_FILE", 3),
    ],
    ids=["empty", "blank", "header-only", "binary", "unknown", "missing-column", "bad-utf8"],
)
def test_a_file_that_cannot_be_used_is_rejected_whole(pipeline, settings, content, code, line):
    pipeline.drop("bad.csv", content)
    [file] = pipeline.wait_final()
    assert file.state == "rejected"
    error = json.loads((settings.outbox / "bad.csv.error.json").read_text())
    assert error["code"] == code
    assert error["file"] == "bad.csv"
    assert error.get("line") == line
    assert (settings.rejected / "bad.csv").read_bytes() == content
    pipeline.wait_mail()
    [mail] = eml(settings, "rejected")
    assert code in mail["Subject"]


def test_missing_columns_are_named(pipeline, settings):
    pipeline.drop("m.csv", "merchant_reference,amount,Currency\nR1,100,USD\n")
    pipeline.wait_final()
    error = json.loads((settings.outbox / "m.csv.error.json").read_text())
    assert error["code"] == "MISSING_COLUMN"
    for column in ("service_command", "language", "customer_email", "notification_type"):
        assert column in error["message"]
    assert "currency" not in error["message"]


def test_too_many_errors_creates_nothing_and_still_lists_every_row(make_pipeline, settings, store):
    h = make_pipeline(settings.with_(max_error_rate=0.25))
    rows = [invoice_row(1), invoice_row(2, amount="x"), invoice_row(3, currency="?")]
    h.drop("t.csv", invoice_csv(rows))
    [file] = h.wait_final()
    assert file.state == "rejected"
    assert json.loads((settings.outbox / "t.csv.error.json").read_text())["code"] == (
        "TOO_MANY_ERRORS"
    )
    results = read_results(settings.outbox / "t.csv.results.csv")
    assert [r["status"] for r in results] == ["REJECTED"] * 3
    assert [r["errors"] for r in results] == [
        "",
        "INVALID_AMOUNT(amount)",
        "INVALID_CURRENCY(currency)",
    ]
    assert store.one("SELECT count(*) AS n FROM invoices")["n"] == 0


def test_a_file_waits_for_approval_when_required(make_pipeline, settings, store):
    h = make_pipeline(settings.with_(require_approval=True))
    h.drop("a.csv", invoice_csv([invoice_row(1)]))
    [file] = h.wait_final()
    assert file.state == "awaiting_approval"
    assert store.one("SELECT count(*) AS n FROM invoices")["n"] == 0
    approve(store, file.id)
    [file] = h.wait_final(states=frozenset({"processed"}))
    with pytest.raises(StateError, match="processed, not awaiting approval"):
        approve(store, file.id)
    assert store.one("SELECT count(*) AS n FROM invoices")["n"] == 1


def states_of(store, file_id: int) -> list[str]:
    sql = "SELECT state FROM transitions WHERE file_id = ? ORDER BY id"
    return [r["state"] for r in store.all(sql, (file_id,))]


def test_a_file_passes_each_state_once_and_ends_holding_no_lease(pipeline, store):
    pipeline.drop("once.csv", invoice_csv([invoice_row(1)]))
    [file] = pipeline.wait_final()
    assert states_of(store, file.id) == [
        "received",
        "validating",
        "validated",
        "processing",
        "processed",
    ]
    # The results' name was chosen before processing, with the validation recorded.
    assert file.result_name == "once.csv"
    assert file.lease_owner is None and file.lease_until is None


def test_a_file_waiting_for_approval_holds_no_lease(make_pipeline, settings, store):
    h = make_pipeline(settings.with_(require_approval=True))
    h.drop("wait.csv", invoice_csv([invoice_row(1)]))
    [file] = h.wait_final()
    assert states_of(store, file.id)[-2:] == ["validated", "awaiting_approval"]
    assert file.lease_owner is None and file.result_name == "wait.csv"


def test_a_file_left_validated_by_a_crash_is_moved_on(make_pipeline, settings, store):
    # Given a file an earlier run left validated, approved, with no results' name yet
    h = make_pipeline(settings.with_(require_approval=True))
    h.drop("left.csv", invoice_csv([invoice_row(1)]))
    [file] = h.wait_final()
    h.stop()
    with store.atomic() as conn:
        files.update(conn, file.id, state="validated", result_name=None)
    # When it is run again with no approval required
    rt = Runtime(settings=settings.with_(require_approval=False), store=store, kinds=KINDS)
    assert advance(rt, file.id) == "processed"
    # Then it is processed once, under its own name
    assert states_of(store, file.id)[-2:] == ["processing", "processed"]
    assert states_of(store, file.id).count("processing") == 1
    assert (settings.outbox / "left.csv.results.csv").exists()
    assert store.one("SELECT count(*) AS n FROM invoices")["n"] == 1


def test_a_later_file_of_the_same_name_gets_a_distinct_result(pipeline, settings):
    pipeline.drop("same.csv", invoice_csv([invoice_row(1)]))
    pipeline.wait_final(1)
    pipeline.drop("same.csv", invoice_csv([invoice_row(2)]))
    files = pipeline.wait_final(2)
    assert (settings.outbox / "same.csv.results.csv").exists()
    assert (settings.outbox / f"same.csv.{files[1].id}.results.csv").exists()
    assert (settings.archive / "same.csv").exists()
    assert (settings.archive / f"same.{files[1].id}.csv").exists()
    first = read_results(settings.outbox / "same.csv.results.csv")
    assert first[0]["merchant_reference"] == "REF-000001"


def test_text_cells_that_look_like_formulas_are_neutralised(pipeline, settings):
    rows = [invoice_row(1, merchant_reference='=HYPERLINK("http://x")', amount="@SUM(A1)")]
    pipeline.drop("f.csv", invoice_csv(rows))
    pipeline.wait_final()
    [result] = read_results(settings.outbox / "f.csv.results.csv")
    assert result["merchant_reference"] == '\'=HYPERLINK("http://x")'
    assert result["amount"] == "'@SUM(A1)"


def test_unknown_columns_are_named_in_the_validation_email(pipeline, settings):
    header = ("internal_id", *(c for c in invoice_row(1)), "Notes ")
    pipeline.drop(
        "u.csv", invoice_csv([invoice_row(1, internal_id="7", **{"Notes ": "x"})], header)
    )
    [file] = pipeline.wait_final()
    assert file.state == "processed"
    pipeline.wait_mail()
    [mail] = eml(settings, "validated")
    assert "internal_id, notes" in mail.get_body(("plain",)).get_content()


def test_two_files_of_the_same_name_archived_at_once_keep_both_originals(settings, store):
    # Given two files named alike, the first given archive/same.csv but not moved yet
    ids = []
    for n in (1, 2):
        (settings.inbox / "same.csv").write_text(invoice_csv([invoice_row(n)]))
        ids.append(claim.claim(settings, store, settings.inbox / "same.csv"))
    first, second = ids
    with store.atomic() as conn:
        files.update(conn, first, final_path=str(settings.archive / "same.csv"))
    rt = Runtime(settings=settings, store=store, kinds=KINDS)
    # When the second moves before it
    moved = worker.pipeline.stages._move_original(rt, files.get(store, second), settings.archive)
    # Then the second takes a name of its own, and the first the one it was given
    assert moved == settings.archive / f"same.{second}.csv"
    again = worker.pipeline.stages._move_original(rt, files.get(store, first), settings.archive)
    assert again == settings.archive / "same.csv"
    assert "REF-000001" in again.read_text() and "REF-000002" in moved.read_text()
