"""Build emails with ``email.policy.default``; nothing from a file can make a header.

Header values that come from files (names, subjects) pass through
:func:`header_text`: control characters are dropped and RFC 2047 encoded-word
openers are broken, because Python's email package can write an encoded
newline back out as a real header line (CVE-2024-6923).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
MAX_HEADER_TEXT = 200
#: Headers whose values repeat from email to email, parsed once (see _Headers).
_REPEATING = frozenset(
    {"mime-version", "content-type", "content-transfer-encoding", "auto-submitted"}
)
_PARSED_KEPT = 256


class _Headers(HeaderRegistry):
    """The standard registry, with each header's class made once: the stock one builds
    a new class at every lookup, about a third of the time it takes to build an email."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._parsed: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            made = self._classes[key] = super().__getitem__(name)
        return made

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._classes.pop(name.lower(), None)
        self._parsed.clear()

    def __call__(self, name: str, value: Any) -> BaseHeader:
        # A header object is immutable, and the MIME headers repeat from one email to
        # the next: parsing them again was a fifth of the time to build an email.
        if name.lower() not in _REPEATING or not isinstance(value, str):
            return super().__call__(name, value)
        key = (name, value)
        made = self._parsed.get(key)
        if made is None:
            if len(self._parsed) >= _PARSED_KEPT:
                self._parsed.clear()
            made = self._parsed[key] = super().__call__(name, value)
        return made


#: ``email.policy.default``, parsing and folding headers the same way.
POLICY = policy.default.clone(header_factory=_Headers())


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "text"
    subtype: str = "csv"


def header_text(text: str, limit: int = MAX_HEADER_TEXT) -> str:
    """One safe line of header text."""
    clean = _CONTROL.sub(" ", text).replace("=?", "= ?").strip()
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def address(addr_spec: str, display_name: str = "") -> Address:
    """An ``Address``; raises ValueError for anything that is not one plain address."""
    if _CONTROL.search(addr_spec) or "," in addr_spec:
        raise ValueError(f"not a single email address: {addr_spec!r}")
    return Address(display_name=header_text(display_name, 80), addr_spec=addr_spec.strip())


def build(
    *,
    sender: str,
    recipients: Iterable[str],
    subject: str,
    text: str,
    html: str,
    attachments: Iterable[Attachment] = (),
    sender_name: str = "invoice-worker",
    recipient_name: str = "",
    message_id: str | None = None,
    automatic: bool = False,
) -> EmailMessage:
    """A multipart/alternative email (text first, then HTML) with attachments.

    ``message_id``: a stable id (``local@domain``) so that a message sent twice
    after a crash carries the same id and mail clients show it once.
    ``automatic``: a report to staff; ``Auto-Submitted`` keeps vacation
    responders from answering it (RFC 3834).
    """
    domain = sender.rpartition("@")[2] or "localhost"
    msg = EmailMessage(policy=POLICY)
    msg["From"] = address(sender, sender_name)
    msg["To"] = [address(r, recipient_name) for r in recipients]
    msg["Subject"] = header_text(subject)
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = f"<{message_id}@{domain}>" if message_id else make_msgid(domain=domain)
    if automatic:
        msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    for item in attachments:
        msg.add_attachment(
            item.content,
            maintype=item.maintype,
            subtype=item.subtype,
            filename=header_text(item.filename, 120),
        )
    return msg
