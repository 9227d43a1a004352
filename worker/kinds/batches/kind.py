"""Batch request files (many to one, IremboPay "Create Batch Invoice").

Validation reads the requests (JSON object, array or lines; CSV rows grouped by
``transaction_id``) into ``requests.json`` under the file's work folder. The
rules depend on the invoices' state at the moment a request is decided, so
they run in processing: each request in its own ``BEGIN IMMEDIATE``
transaction (``requests.decide``), in file order, so a request sees what
earlier requests of the same file created.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notifications import batch_reports
from notifications.prepared import Prepared
from worker import log
from worker.errors import FileRejected
from worker.intake.readers import Signature, Table
from worker.kinds.batches import check
from worker.kinds.batches import requests as batching
from worker.pipeline.check import Report
from worker.pipeline.kind import FileKind, Summary
from worker.pipeline.results import atomic_file, formula_safe_text
from worker.pipeline.runtime import Runtime
from worker.settings import Settings
from worker.state import Connection, File, Store, files
from worker.state import batches as batch_state

FIRST_ROWS = 20


class BatchFiles(FileKind):
    """Many invoices linked into one (IremboPay "Create Batch Invoice")."""

    name = "batches"
    signature = Signature(
        "batches", frozenset({"transaction_id"}), ("transaction_id", "invoice_number"), json=True
    )
    result_suffix = ".results.json"
    reports_validation = False
    error_rate_applies = False

    def validate(self, rt: Runtime, file: File, table: Table) -> Summary:
        requests = batching.read_requests(table, rt.settings.chunk_rows)
        if not requests:
            raise FileRejected("EMPTY_FILE", "the file holds no batch request")
        batching.save(rt.work(file), requests)
        # Every request goes on to processing: whether it can be created is decided there.
        return Summary(rows=len(requests), valid=len(requests), chunks=1)

    def work_lost(self, rt: Runtime, file: File) -> bool:
        # Each request is decided with its done mark: reading them again loses nothing.
        return not batching.saved(rt.work(file))

    def reserve(self, rt: Runtime, conn: Connection, summary: Summary) -> int | None:
        # A batch's number is reserved in the transaction that creates it: no gaps.
        return None

    def process(self, rt: Runtime, file: File, renew: Callable[[], None]) -> None:
        requests = batching.load(rt.work(file))
        done = batch_state.decided(rt.store, file.id)
        renewed = time.monotonic()
        for position, parsed in enumerate(requests, start=1):
            if position in done:
                continue
            with rt.store.atomic() as conn:
                entry = batching.decide(
                    conn,
                    file_id=file.id,
                    position=position,
                    parsed=parsed,
                    now=datetime.now(UTC),
                    link_base=rt.settings.payment_link_base,
                )
            log.event(
                "batch.created" if entry["data"] else "batch.rejected",
                file_id=file.id,
                transaction_id=entry["transactionId"],
                invoice_number=(entry["data"] or {}).get("invoiceNumber"),
                errors=",".join(e["code"] for e in entry["errors"]) or None,
            )
            if time.monotonic() - renewed > rt.settings.lease_seconds / 4:
                renew()
                renewed = time.monotonic()
        decided, rejected = batch_state.counts(rt.store, file.id)
        with rt.store.atomic() as conn:
            files.update(conn, file.id, valid=decided - rejected, rejected=rejected)

    def entries(self, rt: Runtime, file_id: int) -> list[dict[str, Any]]:
        return [json.loads(result) for result in batch_state.results(rt.store, file_id)]

    def write_results(self, rt: Runtime, file: File, target: Path, created: bool) -> None:
        entries = self.entries(rt, file.id)
        with atomic_file(target) as fh:
            json.dump(entries, fh, ensure_ascii=False, indent=2)
            fh.write("\n")

    def errors_csv(self, rt: Runtime, file: File) -> bytes | None:
        rows = [
            (number, e)
            for number, e in enumerate(self.entries(rt, file.id), start=1)
            if e["status"] == "REJECTED"
        ]
        if not rows:
            return None
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["request", "transaction_id", "http_status", "errors"])
        for number, e in rows:
            writer.writerow(
                [
                    number,
                    formula_safe_text(e["transactionId"] or ""),
                    e["httpStatus"],
                    formula_safe_text(_codes(e)),
                ]
            )
        return out.getvalue().encode()

    def check(self, settings: Settings, table: Table, store: Store | None) -> Report:
        return check.batches(settings, table, store)

    def template(self, expiry: datetime) -> tuple[list[str], list[str]]:
        return list(batching.CSV_COLUMNS), [
            "TX-2026-0001",
            "100000000001",
            "March invoices, paid as one",
        ]

    def processing_report(self, rt: Runtime, file: File) -> Prepared:
        entries = self.entries(rt, file.id)
        created = [e for e in entries if e["status"] == "CREATED"]
        rejected = [e for e in entries if e["status"] == "REJECTED"]
        totals: dict[str, tuple[int, int]] = {}
        for e in created:
            count, total = totals.get(e["data"]["currency"], (0, 0))
            totals[e["data"]["currency"]] = (count + 1, total + e["data"]["amount"])
        return batch_reports.batches(
            rt.envelope,
            {"id": file.id, "name": file.name, "kind": self.name},
            created=len(created),
            rejected=len(rejected),
            first_created=[
                (
                    e["transactionId"],
                    e["data"]["invoiceNumber"],
                    len(e["data"]["childInvoices"]),
                    e["data"]["amount"],
                    e["data"]["currency"],
                )
                for e in created[:FIRST_ROWS]
            ],
            first_rejected=[
                (e["transactionId"] or "-", e["httpStatus"], _codes(e))
                for e in rejected[:FIRST_ROWS]
            ],
            currency_totals=[(cur, n, total) for cur, (n, total) in totals.items()],
            result_name=f"{file.result_name}{self.result_suffix}",
            errors_csv=self.errors_csv(rt, file),
        )


def _codes(entry: dict[str, Any]) -> str:
    """``CODE(n1 n2)`` per error, joined by ``;``: what a person reads in an email or CSV."""
    return ";".join(
        f"{e['code']}({' '.join(e['invoiceNumbers'])})" if e["invoiceNumbers"] else e["code"]
        for e in entry["errors"]
    )
