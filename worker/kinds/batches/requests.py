"""Batch requests: read from a file, and each decided as a whole in one transaction.

:func:`decide` runs inside the caller's ``BEGIN IMMEDIATE`` transaction: it
reads the invoices the request names, applies ``rules.batches``, and either
creates the batch invoice and links its invoices, or creates nothing. The
decision is recorded in ``batch_requests`` in the same transaction, so two
files racing for one invoice are serialised by SQLite's write lock (the second
sees the first's link), and a re-run answers a decided request from its record.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from rules import values
from rules.batches import (
    BATCH_FIELDS,
    INVOICE_SCHEMA,
    BatchContext,
    Request,
    evaluate,
    http_status,
)
from worker.errors import FileRejected, StateError
from worker.intake.readers import Table, read_json_documents
from worker.kinds import documents, links
from worker.state import Connection, chunks, lookups, numbers
from worker.state import batches as batch_state
from worker.state.files import now_iso

TOKEN_BYTES = 16  # 128 bits, like an invoice's payment link
EXPIRY_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # as invoices store it
JSON_KEYS = ("transactionId", "invoiceNumbers", "description")
CSV_COLUMNS = ("transaction_id", "invoice_number", "description")


@dataclass(frozen=True)
class Parsed:
    """A request and where it came from: CSV line numbers, or None for JSON."""

    request: Request
    line_numbers: tuple[int, ...] | None = None

    def to_doc(self) -> dict[str, Any]:
        r = self.request
        return {
            "transactionId": r.transaction_id,
            "invoiceNumbers": list(r.invoice_numbers),
            "description": r.description,
            "lineNumbers": list(self.line_numbers) if self.line_numbers is not None else None,
        }

    @staticmethod
    def from_doc(doc: dict[str, Any]) -> Parsed:
        lines = doc.get("lineNumbers")
        return Parsed(
            Request(doc["transactionId"], tuple(doc["invoiceNumbers"]), doc["description"]),
            tuple(lines) if lines is not None else None,
        )


# -- reading -------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A JSON scalar as trimmed text; None for blank, null, booleans and containers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _number_text(value: Any) -> str | None:
    # Anything that is not text or an integer cannot name an invoice: keep it visible
    # (INVOICE_NOT_FOUND names it) rather than drop it silently.
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value) or json.dumps(value, ensure_ascii=False)


def _distinct(items: list[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def from_json(doc: dict[str, Any]) -> Request:
    numbers = doc.get("invoiceNumbers")
    if not isinstance(numbers, list):
        numbers = [] if numbers is None or isinstance(numbers, dict) else [numbers]
    description = doc.get("description")
    return Request(
        transaction_id=_text(doc.get("transactionId")),
        invoice_numbers=_distinct([_number_text(n) for n in numbers]),
        description=description if isinstance(description, str) else _text(description),
    )


def _json_requests(path: Path) -> list[Parsed]:
    docs: list[dict[str, Any]] = []
    for number, doc in enumerate(read_json_documents(path), start=1):
        if not isinstance(doc, dict):
            raise FileRejected("UNREADABLE_FILE", f"batch request {number} is not a JSON object")
        docs.append(doc)
    if docs and not any(key in doc for doc in docs for key in JSON_KEYS):
        raise FileRejected(
            "UNKNOWN_FILE_KIND",
            "the JSON names no batch request keys (transactionId, invoiceNumbers)",
        )
    return [Parsed(from_json(doc)) for doc in docs]


def _csv_requests(table: Table, chunk_rows: int) -> list[Parsed]:
    present = set(table.columns)
    frames = [
        raw.select(
            "line_number",
            *[
                (pl.col(c).str.strip_chars().replace("", None) if c in present else pl.lit(None))
                .cast(pl.String)
                .alias(c)
                for c in CSV_COLUMNS
            ],
        )
        for raw in table.batches(chunk_rows)
    ]
    if not frames:
        return []
    frame = pl.concat(frames).filter(~pl.all_horizontal(pl.col(list(CSV_COLUMNS)).is_null()))
    # Rows of one transaction form one request; a row with no transaction id is its own.
    key = (
        pl.when(pl.col("transaction_id").is_null())
        .then(pl.lit("line:") + pl.col("line_number").cast(pl.String))
        .otherwise(pl.lit("tx:") + pl.col("transaction_id"))
    )
    groups = frame.group_by(key.alias("_key"), maintain_order=True).agg(
        pl.col("transaction_id").first(),
        pl.col("invoice_number"),
        pl.col("line_number"),
        pl.col("description").drop_nulls().first(),
    )
    return [
        Parsed(
            Request(tx, _distinct(numbers), description),
            tuple(int(n) for n in lines),
        )
        for _, tx, numbers, lines, description in groups.iter_rows()
    ]


def read_requests(table: Table, chunk_rows: int) -> list[Parsed]:
    """Every batch request of a file, in file order (CSV rows grouped by transaction)."""
    if table.format == "json":
        return _json_requests(table.path)
    return _csv_requests(table, chunk_rows)


def save(folder: Path, requests: list[Parsed]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".requests.json.tmp"
    tmp.write_text(json.dumps([p.to_doc() for p in requests], ensure_ascii=False), "utf-8")
    tmp.replace(folder / "requests.json")


def saved(folder: Path) -> bool:
    return (folder / "requests.json").exists()


def load(folder: Path) -> list[Parsed]:
    docs = json.loads((folder / "requests.json").read_text("utf-8"))
    return [Parsed.from_doc(d) for d in docs]


# -- deciding ------------------------------------------------------------------

_STATE_SCHEMA = {k: v for k, v in INVOICE_SCHEMA.items() if k not in ("requested", "found")}
_STATE_SCHEMA["expires_at"] = pl.String()


def invoices_frame(conn: Connection | None, request: Request) -> pl.DataFrame:
    """The request's invoices as ``rules.batches`` reads them (all not found without a db)."""
    asked = pl.DataFrame(
        {"requested": list(request.invoice_numbers)}, schema={"requested": pl.String}
    )
    asked = asked.with_columns(
        invoice_number=pl.when(pl.col("requested").str.contains(r"^[0-9]{1,18}$")).then(
            pl.col("requested").cast(pl.Int64, strict=False)
        )
    )
    numbers = asked["invoice_number"].drop_nulls().unique().to_list()
    if conn is None:
        state = pl.DataFrame(schema=_STATE_SCHEMA)
    else:
        rows = lookups.invoices(conn, numbers, list(_STATE_SCHEMA))
        state = documents.frame(rows, _STATE_SCHEMA)
    frame = asked.join(state, on="invoice_number", how="left").with_columns(
        found=pl.col("type").is_not_null(),
        expires_at=values.instant(pl.col("expires_at")),
    )
    # "0012" and "12" name one invoice: count it once.
    same = pl.coalesce(pl.col("invoice_number").cast(pl.String), "requested")
    frame = frame.filter(same.is_first_distinct())
    return frame.select(list(INVOICE_SCHEMA))


def transaction_exists(conn: Connection, transaction_id: str | None) -> bool:
    return lookups.transaction_exists(conn, transaction_id)


def _create(
    conn: Connection,
    parsed: Parsed,
    frame: pl.DataFrame,
    file_id: int,
    link_base: str,
) -> int:
    fields = frame.select(**BATCH_FIELDS).row(0, named=True)
    expires: datetime = fields["expires_at"]
    number = numbers.reserve_invoice_numbers(conn, 1)
    token = secrets.token_hex(TOKEN_BYTES)
    stamp = now_iso()
    line = parsed.line_numbers[0] if parsed.line_numbers else None
    batch = batch_state.BatchInvoice(
        invoice_number=number,
        transaction_id=parsed.request.transaction_id,
        file_id=file_id,
        line_number=line,
        amount=fields["amount"],
        currency=fields["currency"],
        language=fields["language"],
        expires_at=expires.strftime(EXPIRY_FORMAT),
        payment_account=fields["payment_account"],
        token=token,
        payment_link_url=links.link(link_base, token),
        description=parsed.request.description,
        stamp=stamp,
    )
    batch_state.create(conn, batch)
    children = frame["invoice_number"].to_list()
    linked = batch_state.link(conn, number, children, stamp)
    if linked != len(children):
        # The rules were checked under this same write lock: this cannot happen.
        raise StateError(f"batch {number}: linked {linked} of {len(children)} invoices")
    return number


def decide(
    conn: Connection,
    *,
    file_id: int,
    position: int,
    parsed: Parsed,
    now: datetime,
    link_base: str,
) -> dict[str, Any]:
    """Decide one request inside the caller's transaction; returns its results entry."""
    request = parsed.request
    frame = invoices_frame(conn, request)
    ctx = BatchContext(now=now, transaction_exists=transaction_exists(conn, request.transaction_id))
    failures = evaluate(request, frame, ctx)
    number = None if failures else _create(conn, parsed, frame, file_id, link_base)
    entry: dict[str, Any] = {
        "transactionId": request.transaction_id,
        "status": "REJECTED" if failures else "CREATED",
        "httpStatus": http_status(failures),
        "errors": [f.doc() for f in failures],
        "data": documents.invoice_docs(conn, [number])[number] if number else None,
    }
    if parsed.line_numbers is not None:
        entry["lineNumbers"] = list(parsed.line_numbers)
    decision = batch_state.Decision(
        file_id=file_id,
        position=position,
        transaction_id=request.transaction_id,
        status=entry["status"],
        http_status=entry["httpStatus"],
        invoice_number=number,
        result=json.dumps(entry, ensure_ascii=False),
        decided_at=now_iso(),
    )
    batch_state.record(conn, decision)
    # A request is a chunk of its file, numbered by its position: the file's count.
    chunks.mark_done(conn, file_id, position, 0 if failures else 1)
    return entry
