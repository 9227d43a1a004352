"""Where emails go: an SMTP server, or ``.eml`` files in ``mail/``. One small interface.

A transport raises :class:`DeliveryError` for what may work later (server
down, 4xx) and :class:`PermanentDeliveryError` for what never will (5xx).
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import ssl
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from notifications.errors import DeliveryError, PermanentDeliveryError, RecipientDeferred

TIMEOUT = 30
#: A connection idle longer than this is checked with NOOP before it is reused;
#: servers drop idle clients, and a NOOP per message would halve the send rate.
IDLE_CHECK_SECONDS = 5.0
#: "Service not available, closing channel": the server, not the recipient.
SERVICE_CLOSING = 421


#: A message, or its bytes as the outbox recorded them (sent as they are).
Mail = EmailMessage | bytes


class Transport(Protocol):
    """Sends one message, named by a stable key so a repeat replaces rather than adds."""

    #: True where sending a key again replaces the first copy (a file), so a repeat
    #: after a crash costs nothing; False where it would reach the inbox twice.
    repeat_replaces: bool

    def send(self, key: str, msg: Mail) -> None: ...

    def close(self) -> None: ...


class EmlFolder:
    """Writes each message as ``<key>.eml``, atomically, readable by the owner only."""

    repeat_replaces = True

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def send(self, key: str, msg: Mail) -> None:
        # Recorded bytes go out as they are: parsing and regenerating them cost more
        # than rendering the email did.
        data = msg if isinstance(msg, bytes) else msg.as_bytes()
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{key}.eml"
        tmp = self.folder / f".{key}.eml.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(target)
        except OSError as exc:
            raise DeliveryError(f"cannot write {target}: {exc}") from exc

    def close(self) -> None:
        pass


class Smtp:
    """An SMTP client for ``smtp://[user:pass@]host[:port]`` (STARTTLS when offered)
    or ``smtps://`` (TLS from the start). Keeps one connection open across sends."""

    repeat_replaces = False

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("smtp_url must start with smtp:// or smtps://")
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.context = ssl_context or ssl.create_default_context()
        self._conn: smtplib.SMTP | None = None
        self._used_at = 0.0
        #: Connections opened so far: the test of connection reuse reads it.
        self.connections = 0

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            if time.monotonic() - self._used_at < IDLE_CHECK_SECONDS:
                return self._conn
            try:
                if self._conn.noop()[0] == 250:
                    return self._conn
            except (smtplib.SMTPException, OSError):
                pass
            self.close()
        conn: smtplib.SMTP
        if self.tls:
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT, context=self.context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT)
        try:
            if not self.tls:
                conn.ehlo()
                if conn.has_extn("starttls"):
                    conn.starttls(context=self.context)
                    conn.ehlo()
            if self.user:
                conn.login(self.user, self.password or "")
        except BaseException:
            # A refused login or TLS handshake must not leave the socket open.
            conn.close()
            raise
        self._conn = conn
        self.connections += 1
        return conn

    def send(self, key: str, msg: Mail) -> None:
        if isinstance(msg, bytes):
            # send_message takes the envelope from the headers, as for a built message.
            msg = message_from_bytes(msg, policy=policy.default)
        try:
            refused = self._connect().send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            error = "; ".join(_reply(code, text) for code, text in exc.recipients.values())
            if SERVICE_CLOSING in codes:
                self.close()
                raise DeliveryError(error) from exc
            if all(code >= 500 for code in codes):
                raise PermanentDeliveryError(error) from exc
            raise RecipientDeferred(error) from exc
        except smtplib.SMTPResponseException as exc:
            self.close()
            error = _reply(exc.smtp_code, exc.smtp_error)
            # A refused login or sender (mail_from) is the configuration's fault, not
            # this message's: retried until fixed, never failed message by message.
            config = (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused)
            if exc.smtp_code >= 500 and not isinstance(exc, config):
                raise PermanentDeliveryError(error) from exc
            raise DeliveryError(error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}") from exc
        finally:
            self._used_at = time.monotonic()
        if refused:
            # Some of several recipients refused: the message went to the others.
            raise PermanentDeliveryError(
                "; ".join(f"{rcpt}: {_reply(*reply)}" for rcpt, reply in refused.items())
            )

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._conn = None


def _reply(code: int, text: bytes | str) -> str:
    """An SMTP reply as one short line, fit for the database and a report."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"[:300]


def from_url(smtp_url: str | None, mail_folder: Path) -> Transport:
    return Smtp(smtp_url) if smtp_url else EmlFolder(mail_folder)
