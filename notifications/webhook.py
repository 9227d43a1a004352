"""The merchant webhook: recorded with the payment, POSTed after, signed, retried until 2xx.

A webhook row is written in the transaction that applies the payment, so a
payment never exists without its notification. Delivery claims due rows by
pushing their ``next_attempt_at`` past the send time (two workers never post
the same one at once), POSTs the stored body, and marks the row sent on a 2xx.
Anything else (an error status, a refused connection, a timeout) is retried
with exponential backoff, for as long as it takes.

The body is signed with HMAC-SHA256 under ``merchant_webhook_secret``: the
``X-Invoice-Worker-Signature`` header is ``sha256=<hex digest of the exact
body bytes>``. ``X-Invoice-Worker-Delivery`` is the same on every attempt of
one notification, so a receiver can drop a repeat (a crash after the
merchant's 2xx and before it is recorded means one more POST).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from worker.delivery.outbox import StoreLike
from worker.errors import DeliveryError

SIGNATURE_HEADER = "X-Invoice-Worker-Signature"
DELIVERY_HEADER = "X-Invoice-Worker-Delivery"
EVENT_HEADER = "X-Invoice-Worker-Event"
EVENT = "invoice.paid"
TIMEOUT = 10.0
CLAIM_SECONDS = 120.0
MAX_BACKOFF = 900.0
USER_AGENT = "invoice-worker"


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 1, 2, 4 ... 15 min."""
    return float(min(2 ** max(attempts - 1, 0), MAX_BACKOFF))


class Endpoint:
    """The merchant's URL (http or https; ``user:pass@`` becomes basic auth) and secret."""

    def __init__(self, url: str, secret: str, *, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("merchant_webhook_url must be an http:// or https:// URL")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.auth = None
        if parts.username:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.auth = "Basic " + base64.b64encode(pair.encode()).decode()
        self.secret = secret
        self.timeout = timeout

    def post(self, body: bytes, delivery: str) -> None:
        """POST once; returns on a 2xx, raises :class:`DeliveryError` otherwise."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: EVENT,
            DELIVERY_HEADER: delivery,
            SIGNATURE_HEADER: sign(body, self.secret),
        }
        if self.auth:
            headers["Authorization"] = self.auth
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            # No redirect is followed: a redirected POST would lose its body.
            conn.request("POST", self.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(f"{self.host}: {type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()
        if not 200 <= response.status < 300:
            raise DeliveryError(f"{self.host}: HTTP {response.status}")


def record(conn: Any, rows: Iterable[tuple[str, int, bytes, str]]) -> None:
    """Add (key, invoice number, body, created_at) rows inside the caller's transaction;
    a key already recorded is kept as it is."""
    conn.executemany(
        "INSERT OR IGNORE INTO webhooks (key, invoice_number, body, created_at)"
        " VALUES (?, ?, ?, ?)",
        rows,
    )


def _claim(store: StoreLike, limit: int) -> list[Any]:
    now = time.time()
    with store.atomic() as conn:
        rows = conn.execute(
            "SELECT id, invoice_number, body, attempts FROM webhooks WHERE state = 'pending'"
            " AND next_attempt_at <= ? ORDER BY id LIMIT ?",
            (now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE webhooks SET next_attempt_at = ?, attempts = attempts + 1 WHERE id = ?",
            [(now + CLAIM_SECONDS, r["id"]) for r in rows],
        )
    return rows


def _sent(store: StoreLike, row_id: int) -> None:
    with store.atomic() as conn:
        conn.execute(
            "UPDATE webhooks SET state = 'sent', last_error = NULL, next_attempt_at = 0,"
            " sent_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?",
            (row_id,),
        )


def _deferred(store: StoreLike, row_id: int, error: str, retry_at: float, rest: list[int]) -> None:
    with store.atomic() as conn:
        conn.execute(
            "UPDATE webhooks SET last_error = ?, next_attempt_at = ? WHERE id = ?",
            (error, retry_at, row_id),
        )
        # Claimed but not tried this round: hand them back untouched, due with this one.
        conn.executemany(
            "UPDATE webhooks SET attempts = attempts - 1, next_attempt_at = ? WHERE id = ?",
            [(retry_at, i) for i in rest],
        )


@dataclass(frozen=True)
class Attempt:
    """One POST: which invoice it told of, its try number, and why it failed (None: sent)."""

    invoice_number: int
    attempts: int
    error: str | None = None
    retry_in: float | None = None


def deliver_due(store: StoreLike, endpoint: Endpoint, limit: int = 100) -> list[Attempt]:
    """POST what is due, in order; stops at the first failure. Returns what was tried."""
    tried: list[Attempt] = []
    rows = _claim(store, limit)
    for index, row in enumerate(rows):
        attempts = row["attempts"] + 1
        try:
            endpoint.post(bytes(row["body"]), str(row["id"]))
        except DeliveryError as exc:
            retry_in = backoff(attempts)
            rest = [r["id"] for r in rows[index + 1 :]]
            _deferred(store, row["id"], str(exc), time.time() + retry_in, rest)
            tried.append(Attempt(row["invoice_number"], attempts, str(exc), retry_in))
            # The endpoint is down or refusing: stop this round rather than hammer it.
            break
        _sent(store, row["id"])
        tried.append(Attempt(row["invoice_number"], attempts))
    return tried


def due(store: StoreLike) -> bool:
    rows = store.all(
        "SELECT 1 FROM webhooks WHERE state = 'pending' AND next_attempt_at <= ? LIMIT 1",
        (time.time(),),
    )
    return bool(rows)


def pending(store: StoreLike) -> int:
    return int(store.all("SELECT count(*) AS n FROM webhooks WHERE state = 'pending'")[0]["n"])
