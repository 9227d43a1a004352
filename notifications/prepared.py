"""An administrator's report as bytes, built without ``EmailMessage``: what the outbox keeps.

Two reports go out for every file, and a burst of small files spent a fifth of its
time in ``email`` building them (headers parsed and folded again, bodies encoded a
character at a time, the tree flattened). :func:`prepare` writes the same bytes as
:func:`notifications.message.build` with the pieces of :mod:`notifications.mime`,
and hands ``email`` what is outside their simple cases (a sender or recipient that
is not a plain ASCII address); ``tests/test_prepared.py`` compares the bytes.
A :class:`Prepared` still reads as an ``EmailMessage`` (parsed on first use) for
tests and previews.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Any, cast

from notifications import mime
from notifications.message import POLICY, Attachment, address, build, header_text


@dataclass(frozen=True)
class Prepared:
    """An email's bytes (LF line ends, as ``as_bytes`` writes them), its To and its
    Subject as ``str(msg[name])`` gives them."""

    to: str
    subject: str
    data: bytes
    _parsed: list[EmailMessage] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def of(cls, msg: EmailMessage) -> Prepared:
        return cls(str(msg["To"]), str(msg["Subject"]), msg.as_bytes())

    def as_bytes(self) -> bytes:
        return self.data

    @property
    def message(self) -> EmailMessage:
        """The email parsed back, for reading it as ``email`` would."""
        if not self._parsed:
            self._parsed.append(cast(EmailMessage, message_from_bytes(self.data, policy=POLICY)))
        return self._parsed[0]

    def __getitem__(self, name: str) -> Any:
        return self.message[name]

    def __getattr__(self, name: str) -> Any:
        # Only for what the dataclass lacks (get_body, iter_attachments, ...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.message, name)


@lru_cache(maxsize=16)
def _from_line(sender: str, sender_name: str) -> str:
    return mime.fold("From", address(sender, sender_name))


def _to_line(recipients: list[str]) -> str:
    line = "To: " + ", ".join(recipients)
    if len(line) <= mime.MAX_LINE:
        return line + "\n"
    return mime.fold("To", [address(r) for r in recipients])


def _message_id_line(message_id: str | None, domain: str) -> str:
    value = f"<{message_id}@{domain}>" if message_id else make_msgid(domain=domain)
    if len(value) + 12 <= mime.MAX_LINE:
        return f"Message-ID: {value}\n"
    return mime.fold("Message-ID", value)


def _attachment_part(item: Attachment) -> str:
    """The part ``EmailMessage.add_attachment`` makes, written by ``email`` itself:
    reports have at most one, and only when rows were rejected."""
    part = EmailMessage(policy=POLICY)
    part.set_content(
        item.content,
        maintype=item.maintype,
        subtype=item.subtype,
        filename=header_text(item.filename, 120),
        disposition="attachment",
    )
    return part.as_bytes().decode("ascii")


def prepare(
    *,
    sender: str,
    recipients: Iterable[str],
    subject: str,
    text: str,
    html: str,
    attachments: Iterable[Attachment] = (),
    sender_name: str = "invoice-worker",
    message_id: str | None = None,
    automatic: bool = False,
) -> Prepared:
    """``message.build(...)`` (without display names for recipients), as bytes."""
    to = [r.strip() for r in recipients]
    items = list(attachments)
    simple = mime.SIMPLE_ADDRESS.match(sender) and all(mime.SIMPLE_ADDRESS.match(r) for r in to)
    if not simple or not to:
        msg = build(
            sender=sender,
            recipients=to,
            subject=subject,
            text=text,
            html=html,
            attachments=items,
            sender_name=sender_name,
            message_id=message_id,
            automatic=automatic,
        )
        return Prepared.of(msg)
    domain = sender.rpartition("@")[2] or "localhost"
    text_cte, text_body = mime.encode_text(text)
    html_cte, html_body = mime.encode_text(html)
    parts = [_attachment_part(item) for item in items]
    inner = mime.boundary(text_body, html_body, *parts)
    alternative = (
        f'Content-Type: multipart/alternative;\n boundary="{inner}"\n\n'
        f'--{inner}\nContent-Type: text/plain; charset="utf-8"\n'
        f"Content-Transfer-Encoding: {text_cte}\n\n{text_body}"
        f'\n--{inner}\nContent-Type: text/html; charset="utf-8"\n'
        f"Content-Transfer-Encoding: {html_cte}\nMIME-Version: 1.0\n\n{html_body}"
        f"\n--{inner}--\n"
    )
    if parts:
        outer = mime.boundary(text_body, html_body, *parts, inner)
        body = (
            f'Content-Type: multipart/mixed; boundary="{outer}"\n\n--{outer}\n{alternative}'
            + "".join(f"\n--{outer}\n{part}" for part in parts)
            + f"\n--{outer}--\n"
        )
    else:
        body = alternative
    subject_line = mime.subject_line(subject)
    head = "".join(
        (
            _from_line(sender, sender_name),
            _to_line(to),
            subject_line,
            f"Date: {format_datetime(datetime.now().astimezone())}\n",
            _message_id_line(message_id, domain),
            "Auto-Submitted: auto-generated\n" if automatic else "",
            "MIME-Version: 1.0\n",
        )
    )
    return Prepared(", ".join(to), header_text(subject), (head + body).encode("utf-8"))
