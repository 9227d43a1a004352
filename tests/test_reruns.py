"""A file processed again (a redelivered job, a restart) decides nothing twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import (
    batch_request,
    batch_results,
    future,
    invoice_csv,
    invoice_row,
    payment_csv,
    payment_row,
    read_results,
    run_file,
)

from worker.kinds import KINDS
from worker.kinds import KINDS as kinds
from worker.pipeline.runtime import Runtime
from worker.pipeline.stages import approve
from worker.state import File, files


@pytest.fixture
def held(make_pipeline, settings):
    """The pipeline holding every validated file for approval."""
    return make_pipeline(settings.with_(require_approval=True))


def release(h: Any, file_id: int) -> File:
    approve(h.store, file_id)
    h.wait_final(file_id, states=frozenset({"processed"}))
    return files.get(h.store, file_id)


def processed_twice_then_released(h: Any, settings: Any, name: str, content: str) -> File:
    """Drop a file; while it waits for approval, run its processing step twice (as a
    redelivered job would); then let the pipeline finish it."""
    file = run_file(h, name, content)
    assert file.state == "awaiting_approval"
    kind, rt = kinds.get(file.kind), Runtime(settings=h.settings, store=h.store, kinds=KINDS)
    for _ in range(2):
        kind.process(rt, files.get(h.store, file.id), lambda: None)
    return release(h, file.id)


def test_a_batch_file_processed_again_creates_each_batch_once(held, settings, store):
    invoices = run_file(held, "i.csv", invoice_csv([invoice_row(n) for n in (1, 2, 3)]))
    release(held, invoices.id)
    a, b, c = [r[0] for r in store.all("SELECT invoice_number FROM invoices ORDER BY 1")]
    requests = [
        batch_request("TX-1", [a, b]),
        batch_request("TX-2", [c]),
        batch_request("TX-3", [a]),
    ]
    file = processed_twice_then_released(held, settings, "batch.json", json.dumps(requests))
    results = batch_results(settings, "batch.json")
    assert [(r["transactionId"], r["status"]) for r in results] == [
        ("TX-1", "CREATED"),
        ("TX-2", "CREATED"),
        ("TX-3", "REJECTED"),
    ]
    assert store.one("SELECT count(*) AS n FROM invoices WHERE type = 'BATCH'")["n"] == 2
    assert file.created == 2


def test_a_payment_file_processed_again_pays_and_notifies_once(held, settings, store):
    invoices = run_file(held, "i.csv", invoice_csv([invoice_row(n) for n in (1, 2)]))
    release(held, invoices.id)
    a, b = [r[0] for r in store.all("SELECT invoice_number FROM invoices ORDER BY 1")]
    rows = [payment_row("PAY-1", a, 10000), payment_row("PAY-2", b, 10000)]
    file = processed_twice_then_released(held, settings, "pay.csv", payment_csv(rows))
    results = read_results(settings.outbox / "pay.csv.results.csv")
    assert [r["status"] for r in results] == ["APPLIED", "APPLIED"]
    assert file.created == 2
    assert store.one("SELECT count(*) AS n FROM payments")["n"] == 2
    assert store.one("SELECT count(*) AS n FROM webhooks")["n"] == 2


def test_an_invoice_file_processed_again_records_each_existing_row_once(held, settings, store):
    # Given REF-1 invoiced; a file naming it, REF-2 and a new REF-3, waiting; and REF-2
    # invoiced with the same content by another file after that one's validation
    expiry = future(60)
    one, two, three = (invoice_row(n, request_expiry_date=expiry) for n in (1, 2, 3))
    release(held, run_file(held, "first.csv", invoice_csv([one])).id)
    ours = run_file(held, "ours.csv", invoice_csv([one, two, three]))
    assert ours.state == "awaiting_approval"
    approve(store, run_file(held, "theirs.csv", invoice_csv([two])).id)
    held.wait_final(3, states=frozenset({"processed", "awaiting_approval"}))
    # When its processing step runs twice, its results are written, and it is released
    kind, rt = kinds.get("invoices"), Runtime(settings=held.settings, store=store, kinds=KINDS)
    for _ in range(2):
        kind.process(rt, files.get(store, ours.id), lambda: None)
    early = settings.outbox / "early.csv"
    kind.write_results(rt, files.get(store, ours.id), early, created=True)
    file = release(held, ours.id)
    # Then each existing row is recorded once, whichever step found it
    lines = store.all("SELECT line_number FROM existing_rows WHERE file_id = ?", (ours.id,))
    assert sorted(r[0] for r in lines) == [2, 3]
    assert (file.created, file.existing) == (1, 2)
    assert store.one("SELECT count(*) AS n FROM invoices")["n"] == 3
    # And the results written between the steps and at the end say the same
    results = read_results(settings.outbox / "ours.csv.results.csv")
    assert [r["status"] for r in results] == ["EXISTS", "EXISTS", "CREATED"]
    assert read_results(early) == results
