"""A customer email's bytes, fast, and the same bytes as ``email`` writes.

Every customer email has one shape (multipart/alternative: text, then HTML): only
its recipient, subject, date, id and two bodies change. Built through
``EmailMessage`` and flattened, one took about 1.4 ms, four fifths of it parsing and
refolding headers that are the same every time and quoted-printable-encoding the
HTML one character at a time. A :class:`Frame` holds what does not change (the
From line, the MIME headers), written once by ``email`` itself; the parts that
change are written by the functions below, which give exactly what ``email`` gives
for the same input (``tests/test_mime.py`` compares the bytes), and hand any value
outside their simple cases to ``email``. One exception, for volume: a customer
email's quoted-printable bodies are ``binascii``'s (:func:`qp_lines`), which decode
to the same text in lines RFC 2045 allows. Safety is unchanged: every header value
still passes :func:`notifications.message.header_text` and
:func:`notifications.message.address`, and a boundary that a body contains is
never used.
"""

from __future__ import annotations

import binascii
import random
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from notifications.message import POLICY, address, header_text

#: ``email.policy.default``'s line length: bodies and headers wrap before it.
MAX_LINE = POLICY.max_line_length or 78
#: ``email.generator``'s boundary: 15 ``=``, a zero-padded random number, ``==``.
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))
#: Characters quoted-printable leaves as they are (``email.quoprimime``), but ``=``:
#: that one is replaced on its own, in C, before the rare rest are looked up.
_QP_UNSAFE = re.compile(r"[^\t\n\r\x20-\x7e]+")
_QP_MAP = [f"={c:02X}" for c in range(256)]
#: The bytes quoted-printable writes as they are (or as a line break).
_QP_SAFE_BYTES = bytes([*range(0x20, 0x3D), *range(0x3E, 0x7F), 0x09, 0x0A, 0x0D])
#: The line ends ``str.splitlines`` finds in a body once quoted-printable has escaped
#: every other control character.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: Values whose folded header is ``Name: value``: ``email`` parses them to the same
#: tokens and, fitting on one line, writes them back unchanged (the tests check it).
_ATOM = r"[A-Za-z0-9'_+-]+"
_SIMPLE_NAME = re.compile(rf"{_ATOM}(?: {_ATOM})*\Z")
SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\Z"
)
_SIMPLE_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*\Z")
#: Bytes per encoded word: ``=?utf-8?b?``, 56 base64 characters and ``?=`` make 68,
#: so that ``Subject: `` and a word fit in a line.
_EW_BYTES = 42


@dataclass(frozen=True)
class Wire:
    """A message as a transport sends it: the envelope, and the bytes with LF line
    ends (as ``EmailMessage.as_bytes`` writes them; SMTP gets them with CRLF)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes


def fold(name: str, value: Any) -> str:
    """The header line ``email`` writes for ``value``, line end included."""
    return str(POLICY.header_factory(name, value).fold(policy=POLICY))


def qp_body(text: str, maxlinelen: int = MAX_LINE) -> str:
    """``email.quoprimime.body_encode(text, maxlinelen)``, line by line: its lines are
    encoded apart from each other, and most lines of an email are its template's, the
    same in every one, so each is encoded once and then looked up."""
    if not text:
        return text
    lines = _LINE_BREAK.split(text) if "\r" in text else text.split("\n")
    return "\n".join([_qp_line(line, maxlinelen) for line in lines])


@lru_cache(maxsize=4096)
def _qp_line(line: str, maxlinelen: int) -> str:
    """One line, escaped and cut with soft breaks as ``quoprimime.body_encode`` does."""
    line = _QP_UNSAFE.sub(_qp_run, line.replace("=", "=3D"))
    # From here on, quoprimime's own line breaking, step for step.
    maxlinelen1 = maxlinelen - 1
    encoded: list[str] = []
    append = encoded.append
    start = 0
    laststart = len(line) - 1 - maxlinelen
    while start <= laststart:
        stop = start + maxlinelen1
        if line[stop - 2] == "=":
            append(line[start : stop - 1])
            start = stop - 2
        elif line[stop - 1] == "=":
            append(line[start:stop])
            start = stop - 1
        else:
            append(line[start:stop] + "=")
            start = stop
    if line and line[-1] in " \t":
        room = start - laststart
        if room >= 3:
            q = _QP_MAP[ord(line[-1])]
        elif room == 2:
            q = line[-1] + "=\n"
        else:
            q = "=\n" + _QP_MAP[ord(line[-1])]
        append(line[start:-1] + q)
    else:
        append(line[start:])
    return "\n".join(encoded)


def _qp_run(match: re.Match[str]) -> str:
    """``=XX`` for each character of a run that quoted-printable must escape."""
    return "=" + binascii.hexlify(match.group().encode("latin-1"), "=").decode().upper()


def base64_body(data: bytes) -> str:
    """``email``'s base64 body: lines of 76 characters (57 bytes, a whole number of
    3-byte groups, so one encoding cut into lines is the same as line by line)."""
    step = MAX_LINE // 4 * 3
    width = step // 3 * 4
    text = binascii.b2a_base64(data, newline=False).decode("ascii")
    return "".join([text[i : i + width] + "\n" for i in range(0, len(text), width)])


def qp_lines(data: bytes) -> str:
    """``data`` quoted-printable, by ``binascii`` in C: lines of at most 76 characters, as
    RFC 2045 asks (``email`` writes 78, so its soft breaks fall elsewhere, and it leaves a
    lone ``.`` as it is). Decodes to ``data``. Under half of :func:`qp_body`'s time, whose
    cache misses every line holding a value: a customer email's names, amounts and
    descriptions were a third of the time of sending it."""
    return binascii.b2a_qp(data, istext=True).decode("ascii")


def encode_text(text: str, *, exact: bool = True) -> tuple[str, str]:
    """(Content-Transfer-Encoding, body) as ``EmailMessage.set_content(text)`` chooses them
    (``email.contentmanager``): 7bit or 8bit when every line fits, else the shorter of
    quoted-printable and base64 on the first ten lines. An 8bit body is returned decoded.
    ``exact=False``: quoted-printable is :func:`qp_lines`', and so is the length the
    choice weighs (a body on the border between the two may then go the other way)."""
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    if max(map(len, lines), default=0) <= MAX_LINE:
        return ("7bit", body.decode("ascii")) if body.isascii() else ("8bit", body.decode())
    sniff = b"\n".join(lines[:10]) + b"\n"
    b64_length = len(binascii.b2a_base64(sniff))
    # Every byte quoted-printable escapes takes three characters, and soft line breaks
    # only add: when that much is already longer, base64 wins without encoding it
    # (text in Arabic script, nearly every byte escaped).
    if len(sniff) + 2 * len(sniff.translate(None, _QP_SAFE_BYTES)) > b64_length:
        return "base64", base64_body(body)
    if not exact:
        # binascii encodes each line apart from the others, so the first ten lines'
        # encoding is the whole one's start: the body is encoded once, not twice.
        encoded = qp_lines(body)
        if _hard_lines_length(encoded, 10) > b64_length:
            return "base64", base64_body(body)
        return "quoted-printable", encoded
    sniff_qp = qp_body(sniff.decode("latin-1"))
    if len(sniff_qp) > b64_length:
        return "base64", base64_body(body)
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    return "quoted-printable", qp_body(body.decode("latin-1"))


def _hard_lines_length(encoded: str, count: int) -> int:
    """How long quoted-printable ``encoded`` is through its ``count``-th hard line break
    (a soft one follows ``=``: an ``=`` of the text is written ``=3D``)."""
    end = -1
    for _ in range(count):
        end = encoded.find("\n", end + 1)
        while end > 0 and encoded[end - 1] == "=":
            end = encoded.find("\n", end + 1)
        if end < 0:
            return len(encoded)
    return end + 1


def encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 encoded words (UTF-8, base64), each short enough to follow
    a header's name on its first line; a decoder joins adjacent ones back into ``text``.

    ``email`` cuts a non-ASCII header into plain and encoded runs by its own rules, at
    a tenth of the speed; the words here decode to the same text (the tests check it)."""
    data = text.encode("utf-8")
    words: list[str] = []
    start = 0
    while start < len(data):
        stop = min(start + _EW_BYTES, len(data))
        # Never inside a character: back off over UTF-8 continuation bytes.
        while stop < len(data) and data[stop] & 0xC0 == 0x80:
            stop -= 1
        words.append(f"=?utf-8?b?{binascii.b2a_base64(data[start:stop], newline=False).decode()}?=")
        start = stop
    return words


def to_line(addr_spec: str, display_name: str) -> str:
    """The To line for one recipient with a plain ASCII address (see :class:`Frame`)."""
    name = header_text(display_name, 80)
    tail = f" <{addr_spec}>"
    if not name and len(addr_spec) + 4 <= MAX_LINE:
        return f"To: {addr_spec}\n"
    if _SIMPLE_NAME.match(name) and len(name) + len(tail) + 4 <= MAX_LINE:
        return f"To: {name}{tail}\n"
    if name and not name.isascii():
        # One encoded word only: between two, Python's parser keeps a space in a
        # display name that RFC 2047 (and mail clients) drop.
        words = encoded_words(name)
        line = f"To: {words[0]}{tail}"
        if len(words) == 1 and len(line) <= MAX_LINE:
            return line + "\n"
        if len(words) == 1 and len(tail) <= MAX_LINE:
            return f"To: {words[0]}\n{tail}\n"
    # Long, or ASCII with specials (``J. Smith``, which ``email`` quotes).
    return fold("To", [address(addr_spec, display_name)])


def subject_line(subject: str) -> str:
    text = header_text(subject)
    if _SIMPLE_TEXT.match(text):
        if len(text) + 9 <= MAX_LINE:
            return f"Subject: {text}\n"
    elif not text.isascii():
        return "Subject: " + "\n ".join(encoded_words(text)) + "\n"
    return fold("Subject", text)


def boundary(*bodies: str) -> str:
    """A random boundary like ``email``'s that no body contains (checked more strictly
    than ``email`` does: anywhere, not only as a whole line)."""
    while True:
        token = random.randrange(sys.maxsize)
        made = f"==============={token:0{_BOUNDARY_DIGITS}d}=="
        if not any(made in body for body in bodies):
            return made


class Frame:
    """What every customer email from one sender shares, folded once by ``email``."""

    def __init__(self, sender: str, sender_name: str) -> None:
        self.from_line = fold("From", address(sender, sender_name))
        self.sender = sender
        self.domain = sender.rpartition("@")[2] or "localhost"
        self._simple = bool(SIMPLE_ADDRESS.match(sender))

    def message_id_line(self, local: str) -> str:
        value = f"<{local}@{self.domain}>"
        if self._simple and len(value) + 12 <= MAX_LINE:
            return f"Message-ID: {value}\n"
        return fold("Message-ID", value)

    def build(
        self,
        *,
        recipient: str,
        recipient_name: str,
        subject: str,
        text: tuple[str, str],
        html: tuple[str, str],
        message_id: str,
        date: str,
    ) -> Wire | None:
        """The email's wire form, as ``notifications.message.build`` would write it but for
        its quoted-printable bodies: ``text`` and ``html`` are (Content-Transfer-Encoding,
        body) as ``encode_text(body, exact=False)`` gives them. None for an address that
        is not a plain ASCII dot-atom (``email`` then writes it: it may be refused, or
        need SMTPUTF8)."""
        if not (self._simple and SIMPLE_ADDRESS.match(recipient)):
            return None
        (text_cte, text_body), (html_cte, html_body) = text, html
        b = boundary(text_body, html_body)
        data = "".join(
            (
                self.from_line,
                to_line(recipient, recipient_name),
                subject_line(subject),
                f"Date: {date}\n",
                self.message_id_line(message_id),
                "MIME-Version: 1.0\n",
                f'Content-Type: multipart/alternative;\n boundary="{b}"\n\n',
                f'--{b}\nContent-Type: text/plain; charset="utf-8"\n',
                f"Content-Transfer-Encoding: {text_cte}\n\n",
                text_body,
                f'\n--{b}\nContent-Type: text/html; charset="utf-8"\n',
                f"Content-Transfer-Encoding: {html_cte}\nMIME-Version: 1.0\n\n",
                html_body,
                f"\n--{b}--\n",
            )
        )
        return Wire(self.sender, (recipient,), data.encode("utf-8"))
