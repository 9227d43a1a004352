"""The due-row queue that the outbox and the webhooks share: claim, hand back, back off.

A row is due while ``state = 'pending'`` and ``next_attempt_at <= now``. A
sender claims due rows by pushing ``next_attempt_at`` past the send time (so
two senders never take the same row at once) and counting the try in
``attempts``; a sender that dies mid-round blocks its claims only that long.
"""

from __future__ import annotations

import time
from typing import Any

from worker.state.store import Connection

#: The tables that are queues of this shape; a table name cannot be a parameter.
TABLES = frozenset({"outbox", "webhooks"})
#: The first retry waits this long, each next one twice the last, up to a cap.
BASE_SECONDS = 2.0


def backoff(attempts: int, cap: float) -> float:
    """Seconds to wait after the ``attempts``-th try failed: 2, 4, 8 ... up to ``cap``."""
    return float(min(BASE_SECONDS * 2 ** (max(attempts, 1) - 1), cap))


def _table(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"not a queue table: {table!r}")
    return table


def claim_due(
    conn: Connection, table: str, columns: str, *, limit: int, hold: float
) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due rows, oldest first, for ``hold`` seconds, inside the
    caller's transaction. Each row has ``id``, ``attempts`` (this try counted) and
    ``columns``."""
    now = time.time()
    name = _table(table)
    rows = conn.execute(
        f"SELECT id, attempts, {columns} FROM {name} WHERE state = 'pending'"
        " AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        (now, limit),
    ).fetchall()
    conn.executemany(
        f"UPDATE {name} SET next_attempt_at = ?, attempts = attempts + 1 WHERE id = ?",
        [(now + hold, r["id"]) for r in rows],
    )
    return [{**dict(r), "attempts": r["attempts"] + 1} for r in rows]


def put_back(conn: Connection, table: str, ids: list[int], due_at: float) -> None:
    """Claimed but not tried: the claim's try undone, due again at ``due_at``."""
    conn.executemany(
        f"UPDATE {_table(table)} SET attempts = attempts - 1, next_attempt_at = ? WHERE id = ?",
        [(due_at, i) for i in ids],
    )


def due(conn: Connection, table: str) -> bool:
    """Whether a row is waiting whose time has come."""
    sql = f"SELECT 1 FROM {_table(table)} WHERE state = 'pending' AND next_attempt_at <= ? LIMIT 1"
    return conn.execute(sql, (time.time(),)).fetchone() is not None


def pending(conn: Connection, table: str) -> int:
    """Rows not yet sent (or given up), due or backing off."""
    sql = f"SELECT count(*) FROM {_table(table)} WHERE state = 'pending'"
    return int(conn.execute(sql).fetchone()[0])
