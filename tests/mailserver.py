"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, recording what it accepts.

The tests steer it as a real server misbehaves: refuse one recipient for good
(5xx) or for a while (4xx), close on every sender (421), or stop listening.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

# aiosmtpd logs every SMTP command at INFO: a failing test would show thousands of lines.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    session: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.server.closing:
            return "421 4.3.2 Service not available, closing transmission channel"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        reply = self.server.reply_for(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.server.lock:
            self.server.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), msg, id(session))
            )
        return "250 2.0.0 Message accepted for delivery"


class MailServer:
    def __init__(self, **smtp_options: Any) -> None:
        #: aiosmtpd options: tls_context (STARTTLS), ssl_context (smtps), authenticator...
        self.options = smtp_options
        self.port = free_port()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        #: recipient -> reply to give at RCPT (e.g. "550 5.1.1 no such user").
        self.refuse: dict[str, str] = {}
        #: recipient -> how many more times to answer 450 before accepting.
        self.defer: dict[str, int] = {}
        self.closing = False
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def reply_for(self, address: str) -> str | None:
        if address in self.refuse:
            return self.refuse[address]
        with self.lock:
            if self.defer.get(address, 0) > 0:
                self.defer[address] -= 1
                return "450 4.2.1 Mailbox busy, try again later"
        return None

    def start(self) -> MailServer:
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **self.options
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    # -- what arrived ------------------------------------------------------------

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received if address in r.rcpt_tos]

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received]

    def sessions(self) -> int:
        with self.lock:
            return len({r.session for r in self.received})

    def wait_for(self, count: int, timeout: float = 30, **match: str) -> list[EmailMessage]:
        """Wait until ``count`` messages arrived (whose headers match ``match``)."""
        deadline = time.monotonic() + timeout
        found: list[EmailMessage] = []
        while time.monotonic() < deadline:
            found = [
                m
                for m in self.messages()
                if all(value in str(m[header]) for header, value in match.items())
            ]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(found)} of {count} messages arrived in {timeout}s")
