"""What the metrics endpoint reads at scrape time: a handful of aggregate queries.

The state lives in the database that every process shares, so any process
answers for all of them, and the numbers survive restarts. Plain SQL only (no
SQLite functions): the same queries run on PostgreSQL.

Every table here but ``invoices`` is read whole or through an index that covers
the query. ``invoices`` can hold millions of rows, so customer emails are
counted per file (through ``invoices_file``), and only for files whose emails
may still change: the caller keeps the counts of settled files (see
:func:`settled`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from worker.state.files import FINAL_STATES, RUNNABLE_STATES
from worker.state.store import Store

#: Files are counted per this many ids at a time (well under any backend's
#: limit on parameters).
IDS_PER_QUERY = 500
#: Email states whose rows a sender may still change.
OPEN_EMAIL_STATES = frozenset({"pending", "deferred", "sending"})


@dataclass(frozen=True, slots=True)
class FileTotals:
    """Files of one kind in one state, and the rows and invoices they account for."""

    kind: str
    state: str
    files: int
    valid: int
    rejected: int
    #: Rows answered with an invoice that existed with the same content (SPEC 13).
    existing: int
    created: int


def ping(store: Store) -> None:
    """Raises unless the database answers a read of the files table."""
    store.all("SELECT id FROM files WHERE id = 0")


def file_totals(store: Store) -> list[FileTotals]:
    """Per kind and state: files, valid and rejected rows, invoices created."""
    rows = store.all(
        "SELECT kind, state, count(*) AS files, coalesce(sum(valid), 0) AS valid,"
        " coalesce(sum(rejected), 0) AS rejected, coalesce(sum(existing), 0) AS existing,"
        " coalesce(sum(created), 0) AS created"
        " FROM files GROUP BY kind, state"
    )
    return [
        FileTotals(
            kind=r["kind"] or "unknown",
            state=str(r["state"]),
            files=int(r["files"]),
            valid=int(r["valid"]),
            rejected=int(r["rejected"]),
            existing=int(r["existing"]),
            created=int(r["created"]),
        )
        for r in rows
    ]


def oldest_unfinished(store: Store) -> str | None:
    """``received_at`` (ISO 8601, UTC) of the oldest file a run may still move on."""
    marks = ", ".join("?" for _ in RUNNABLE_STATES)
    value = store.value(
        f"SELECT min(received_at) FROM files WHERE state IN ({marks})", tuple(RUNNABLE_STATES)
    )
    return None if value is None else str(value)


def final_file_ids(store: Store) -> set[int]:
    marks = ", ".join("?" for _ in FINAL_STATES)
    rows = store.all(f"SELECT id FROM files WHERE state IN ({marks})", tuple(FINAL_STATES))
    return {int(r["id"]) for r in rows}


def file_ids(store: Store) -> set[int]:
    return {int(r["id"]) for r in store.all("SELECT id FROM files")}


def _queue_states(store: Store, table: str, retrying: str) -> dict[str, int]:
    """Rows of a due-row queue by state (answered by its ``(state, next_attempt_at)``
    index); the pending ones whose last try failed are counted as ``retrying``."""
    counts = {
        str(r["state"]): int(r["n"])
        for r in store.all(f"SELECT state, count(*) AS n FROM {table} GROUP BY state")
    }
    erred = int(
        store.value(
            f"SELECT count(*) FROM {table} WHERE state = 'pending' AND last_error IS NOT NULL"
        )
    )
    # Two reads, not one snapshot: a row that failed between them is not counted twice.
    counts["pending"] = max(counts.get("pending", 0) - erred, 0)
    counts[retrying] = counts.get(retrying, 0) + erred
    return counts


def admin_emails(store: Store) -> dict[str, int]:
    """The administrators' outbox: pending, deferred (a try failed, due again), sent,
    failed (for good)."""
    return _queue_states(store, "outbox", retrying="deferred")


def webhook_deliveries(store: Store) -> dict[str, int]:
    """Merchant webhooks: pending, sent, failed (a POST failed; due again)."""
    return _queue_states(store, "webhooks", retrying="failed")


def customer_emails(store: Store, file_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Per file of ``file_ids``: its customer emails by state, ``deferred`` being the
    pending ones a server has put off."""
    ids = sorted(file_ids)
    found: dict[int, dict[str, int]] = {}
    for start in range(0, len(ids), IDS_PER_QUERY):
        part = ids[start : start + IDS_PER_QUERY]
        marks = ", ".join("?" for _ in part)
        rows = store.all(
            "SELECT file_id, state, count(*) AS n FROM (SELECT file_id, CASE WHEN"
            " email_state = 'pending' AND email_error IS NOT NULL THEN 'deferred'"
            " ELSE email_state END AS state FROM invoices"
            f" WHERE file_id IN ({marks}) AND email_state IS NOT NULL) AS emails"
            " GROUP BY file_id, state",
            tuple(part),
        )
        for r in rows:
            found.setdefault(int(r["file_id"]), {})[str(r["state"])] = int(r["n"])
    return found


def settled(counts: dict[str, int]) -> bool:
    """Whether a final file's customer emails can change no more."""
    return not any(counts.get(state) for state in OPEN_EMAIL_STATES)
