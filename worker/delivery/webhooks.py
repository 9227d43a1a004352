"""The merchant webhooks' drain: claim what is due, POST it, mark it sent or deferred.

Delivery claims due rows (two workers never post the same one at once), POSTs
the stored body through :class:`notifications.webhook.Endpoint`, and marks the
row sent on a 2xx. Anything else is retried with the queues' one backoff, for
as long as it takes; a round stops at the first failure rather than hammer an
endpoint that is down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from notifications.errors import DeliveryError
from notifications.webhook import Endpoint
from worker.state import Store
from worker.state import webhooks as state
from worker.state.queue import backoff

#: How long a claim keeps other workers off; a worker killed mid-round delays its claims this long.
CLAIM_SECONDS = 120.0
#: Webhooks back off up to every 15 minutes (README, "The merchant webhook").
MAX_BACKOFF = 900.0


@dataclass(frozen=True)
class Attempt:
    """One POST: which invoice it told of, its try number, and why it failed (None: sent)."""

    invoice_number: int
    attempts: int
    error: str | None = None
    retry_in: float | None = None


def deliver_due(store: Store, endpoint: Endpoint, limit: int = 100) -> list[Attempt]:
    """POST what is due, in order; stops at the first failure. Returns what was tried."""
    tried: list[Attempt] = []
    rows = state.claim(store, limit, CLAIM_SECONDS)
    for index, row in enumerate(rows):
        try:
            endpoint.post(bytes(row["body"]), str(row["id"]), event=row["event"])
        except DeliveryError as exc:
            retry_in = backoff(row["attempts"], MAX_BACKOFF)
            rest = [r["id"] for r in rows[index + 1 :]]
            state.deferred(store, row["id"], str(exc), time.time() + retry_in, rest)
            tried.append(Attempt(row["invoice_number"], row["attempts"], str(exc), retry_in))
            # The endpoint is down or refusing: stop this round rather than hammer it.
            break
        state.sent(store, row["id"])
        tried.append(Attempt(row["invoice_number"], row["attempts"]))
    return tried


def due(store: Store) -> bool:
    """Whether a webhook is waiting whose time has come."""
    return state.due(store)


def pending(store: Store) -> int:
    """Webhooks not yet answered with a 2xx."""
    return state.pending(store)
