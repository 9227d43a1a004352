"""The merchant webhook: recorded with the change, POSTed after, signed, retried until 2xx.

This module is the HTTP part: the signature and one POST. The row is recorded
(``worker.state.webhooks``) in the transaction that applies the payment or the
cancellation, so neither exists without its notification, and drained by
``worker.delivery.webhooks``. A 2xx ends it; anything else (an error status, a
refused connection, a timeout) raises :class:`DeliveryError`, to be retried.

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
from urllib.parse import unquote, urlsplit

from notifications.errors import DeliveryError

SIGNATURE_HEADER = "X-Invoice-Worker-Signature"
DELIVERY_HEADER = "X-Invoice-Worker-Delivery"
EVENT_HEADER = "X-Invoice-Worker-Event"
#: The event when none is named (the first, and for long the only, event).
EVENT = "invoice.paid"
TIMEOUT = 10.0
USER_AGENT = "invoice-worker"


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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

    def post(self, body: bytes, delivery: str, event: str = EVENT) -> None:
        """POST once; returns on a 2xx, raises :class:`DeliveryError` otherwise."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: event,
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
