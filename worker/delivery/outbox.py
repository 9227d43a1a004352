"""The email outbox: recorded in SQLite with the state change that caused it, sent after.

A message is claimed by pushing its ``next_attempt_at`` past the send time, so
two workers never send the same one at once; it is marked sent only after the
transport accepted it. A crash between the two means one more send, never a
lost message. ``.eml`` files are named by the message's key, so there a repeat
replaces the same file, and a round of sends is marked in one transaction.
"""

from __future__ import annotations

import time

from notifications.errors import DeliveryError, PermanentDeliveryError
from notifications.transport import Transport
from worker.state import Store
from worker.state import outbox as state
from worker.state.queue import backoff

#: How long a claim keeps others off; a sender killed mid-round blocks its claims this long.
CLAIM_SECONDS = 30.0
#: Emails back off 2 s, 4 s ... up to 5 minutes (README, "Delivery").
MAX_BACKOFF = 300.0


def deliver_due(store: Store, transport: Transport, limit: int = 20) -> dict[str, int]:
    """Send what is due; returns counts of sent, failed (for good) and deferred messages."""
    counts = {"sent": 0, "failed": 0, "deferred": 0}
    rows = state.claim(store, limit, CLAIM_SECONDS)
    # Where a repeat replaces the message (.eml files), a round is recorded in one
    # transaction; over SMTP each send is recorded at once, so a crash repeats one at most.
    per_round = transport.repeat_replaces
    outcomes: list[state.Outcome] = []
    try:
        for index, row in enumerate(rows):
            try:
                transport.send(f"{row['id']:08d}-{row['key'].replace(':', '-')}", row["message"])
            except PermanentDeliveryError as exc:
                outcomes.append((row["id"], "failed", str(exc), 0))
                counts["failed"] += 1
            except DeliveryError as exc:
                retry_at = time.time() + backoff(row["attempts"], MAX_BACKOFF)
                outcomes.append((row["id"], "pending", str(exc), retry_at))
                counts["deferred"] += 1
                # The server is down or busy: stop this round, hand the untried back as they were.
                state.put_back(store, [r["id"] for r in rows[index + 1 :]])
                break
            else:
                outcomes.append((row["id"], "sent", None, 0))
                counts["sent"] += 1
            if not per_round:
                state.finish(store, outcomes)
                outcomes = []
    finally:
        state.finish(store, outcomes)
    return counts


def due(store: Store) -> bool:
    """Whether an email is waiting whose time has come."""
    return state.due(store)


def pending(store: Store) -> int:
    """Emails not yet sent or failed."""
    return state.pending(store)
