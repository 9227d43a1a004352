"""Where emails go: an SMTP server, or ``.eml`` files in ``mail/``. One small interface.

A transport raises :class:`DeliveryError` for what may work later (server
down, 4xx) and :class:`PermanentDeliveryError` for what never will (5xx).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import queue
import smtplib
import ssl
import sys
import threading
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from notifications.errors import DeliveryError, PermanentDeliveryError, RecipientDeferred
from notifications.mime import Wire

TIMEOUT = 30
#: A connection idle longer than this is checked with NOOP before it is reused;
#: servers drop idle clients, and a NOOP per message would halve the send rate.
IDLE_CHECK_SECONDS = 5.0
#: "Service not available, closing channel": the server, not the recipient.
SERVICE_CLOSING = 421


#: A message, its bytes as the outbox recorded them (sent as they are), or a
#: customer email built for throughput (``notifications.mime``).
Mail = EmailMessage | bytes | Wire


class Transport(Protocol):
    """Sends one message, named by a stable key so a repeat replaces rather than adds."""

    #: True where sending a key again replaces the first copy (a file), so a repeat
    #: after a crash costs nothing; False where it would reach the inbox twice.
    repeat_replaces: bool
    #: Whether ``mail_rate`` applies: a server throttles a client that sends too fast;
    #: a folder takes files as fast as the disk writes them.
    paced: bool

    def send(self, key: str, msg: Mail) -> None:
        """Send one message; it is delivered (or on disk for good) when this returns."""

    def write(self, key: str, msg: Mail) -> None:
        """Send one message; it is delivered for good once :meth:`flush` returns."""

    def flush(self) -> None:
        """Make every message written so far delivered for good."""

    def close(self) -> None: ...


def _data(msg: Mail) -> bytes:
    # Recorded bytes go out as they are: parsing and regenerating them cost more
    # than rendering the email did.
    if isinstance(msg, Wire):
        return msg.data
    return msg if isinstance(msg, bytes) else msg.as_bytes()


def _syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2): one call makes every file written on a filesystem durable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call


_SYNCFS = _syncfs()
_instances = itertools.count()
#: Messages a transport's writer thread may have queued: a batch's worth.
WRITE_AHEAD = 1000


class EmlFolder:
    """Writes each message as ``<key>.eml``, atomically, readable by the owner only.

    A file is written in a folder of this transport's own inside the folder
    (``.writing-<pid>-<n>/``), then renamed into it: a reader of the folder never
    sees half a file, and two processes writing at once do not queue on one
    directory's lock to create files (that halved their rate here).

    :meth:`send` writes the file and makes it durable (an fsync) before it returns.
    :meth:`write` hands the bytes to a thread of this transport's own and returns:
    creating a file took from 20 µs to over 1 ms here, with the interpreter's lock
    free meanwhile, so the caller builds the next message while the disk works.
    :meth:`flush` waits for those writes and makes them durable together (one
    syncfs): an fsync a file held the disk for 2 ms, and capped a sender at about
    500 files a second.
    """

    repeat_replaces = True
    paced = False

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._tmp: str | None = None
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=WRITE_AHEAD)
        self._writer: threading.Thread | None = None
        self._written: list[str] = []
        self._failed: DeliveryError | None = None

    def send(self, key: str, msg: Mail) -> None:
        self._write(key, _data(msg), sync=True)

    def write(self, key: str, msg: Mail) -> None:
        data = _data(msg)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_queued, daemon=True)
            self._writer.start()
        self._queue.put((key, data))

    def _write_queued(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._written.append(self._write(*item, sync=False))
            except DeliveryError as exc:
                self._failed = self._failed or exc
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _write(self, key: str, data: bytes, *, sync: bool) -> str:
        target = f"{self.folder}/{key}.eml"
        try:
            tmp = f"{self._tmp_folder()}/{key}.eml"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            self._tmp = None  # made again at the next write (the folder may have gone)
            raise DeliveryError(f"cannot write {target}: {exc}") from exc
        return target

    def _tmp_folder(self) -> str:
        if self._tmp is None:
            tmp = self.folder / f".writing-{os.getpid()}-{next(_instances)}"
            tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._tmp = str(tmp)
        return self._tmp

    def flush(self) -> None:
        """Every file written, and its name in the folder, durable (one syncfs, where
        there is one; else an fsync of each file and of the folder). Raises
        DeliveryError when a write failed: none of them is then known to be there."""
        self._queue.join()
        written, self._written = self._written, []
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed
        if not written:
            return
        try:
            folder = os.open(self.folder, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _SYNCFS is None or _SYNCFS(folder) != 0:
                    for path in written:
                        _fsync(path)
                    os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:
            raise DeliveryError(f"cannot sync {self.folder}: {exc}") from exc

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._tmp is not None:
            # Empty unless a write failed half-way (or the process died in one).
            with contextlib.suppress(OSError):
                os.rmdir(self._tmp)
            self._tmp = None


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Smtp:
    """An SMTP client for ``smtp://[user:pass@]host[:port]`` (STARTTLS when offered)
    or ``smtps://`` (TLS from the start). Keeps one connection open across sends."""

    repeat_replaces = False
    paced = True

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
            if isinstance(msg, Wire):
                # What send_message sends for the same message: CRLF line ends, the
                # envelope from From and To (plain ASCII addresses: no SMTPUTF8).
                data = msg.data.replace(b"\n", b"\r\n")
                refused = self._connect().sendmail(msg.sender, list(msg.recipients), data)
            else:
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

    def write(self, key: str, msg: Mail) -> None:
        self.send(key, msg)

    def flush(self) -> None:
        """Nothing to do: a message the server accepted is its to deliver."""

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
