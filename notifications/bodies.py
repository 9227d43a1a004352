"""A template's body encoded for the wire once: per email, only the lines that hold a
value are encoded, all in one call.

:func:`notifications.mime.encode_text` encodes a customer email's whole HTML body
(3.7 KB) for every email; quoted-printable alone took 50-90 µs of the 250-400 an
email cost here. Most of its lines are the template's, the same in every email,
and ``binascii`` encodes each line apart from the others, so a line's encoding is
the same wherever it stands. :class:`BodyTemplate` encodes the fixed lines once;
the lines holding values are joined by a separator line and encoded together,
then put back between them. For the same values it gives exactly what
``encode_text(body, exact=False)`` gives (``tests/test_bodies.py`` compares them),
and hands the rare rest (a value with a line break or a NUL, a body that is not
quoted-printable) to ``encode_text`` itself.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from string import Formatter

from notifications.mime import MAX_LINE, encode_text

#: How many lines ``set_content`` weighs to choose quoted-printable or base64.
_SNIFF_LINES = 10
#: Between the value lines: a line of one NUL, which quoted-printable writes ``=00``.
#: With no NUL in any value (checked), ``=00`` alone on a line is a separator only.
_SEPARATOR = "\n\x00\n"
_ENCODED_SEPARATOR = "\n=00\n"


def _holds_a_value(line: str) -> bool:
    return any(field is not None for _, field, _, _ in Formatter().parse(line))


def _qp(line: str) -> str:
    # As notifications.mime.qp_lines: one line, with no line break in it.
    return binascii.b2a_qp(line.encode("utf-8"), istext=True).decode("ascii")


class BodyTemplate:
    """A ``str.format`` template with numbered fields (``{0}``). :meth:`encode` is
    ``encode_text(template.format(*values), exact=False)``, its fixed lines encoded
    once."""

    def __init__(self, template: str) -> None:
        self._template = template
        lines = template.split("\n")
        if template.endswith("\n"):
            # What splitlines leaves off after the last line break.
            lines.pop()
        filled = [i for i, line in enumerate(lines) if _holds_a_value(line)]
        holding = set(filled)
        fixed = {i: line.format() for i, line in enumerate(lines) if i not in holding}
        #: The value lines, joined by the separator: filled in one format call.
        self._values = _SEPARATOR.join(lines[i] for i in filled)
        self._count = len(filled)
        #: The encoded body, a field where each value line goes (fixed braces doubled).
        encoded = {i: _qp(line) for i, line in fixed.items()}
        self._encoded = "".join(
            encoded[i].replace("{", "{{").replace("}", "}}") + "\n" if i in encoded else "{}\n"
            for i in range(len(lines))
        )
        self._fixed_longest = max((len(line.encode("utf-8")) for line in fixed.values()), default=0)
        #: The first ten lines: their line breaks and fixed lines' lengths, raw and
        #: encoded, and which of the value lines are among them.
        sniffed = [i for i in fixed if i < _SNIFF_LINES]
        self._sniff_raw = min(len(lines), _SNIFF_LINES) + sum(
            len(fixed[i].encode("utf-8")) for i in sniffed
        )
        self._sniff_encoded = min(len(lines), _SNIFF_LINES) + sum(len(encoded[i]) for i in sniffed)
        self._sniffed_values = [n for n, i in enumerate(filled) if i < _SNIFF_LINES]
        # A carriage return is a line break to splitlines but not to split("\n"); a value
        # line last, with no line break after it, is no line to splitlines when empty.
        self._fast = bool(filled) and "\r" not in template and "\x00" not in template
        self._last_may_vanish = bool(filled) and filled[-1] == len(lines) - 1
        self._last_may_vanish &= not template.endswith("\n")

    def encode(self, values: Sequence[str]) -> tuple[str, str]:
        """(Content-Transfer-Encoding, body) of the template filled with ``values``."""
        if not self._fast:
            return self._slow(values)
        data = self._values.format(*values).encode("utf-8")
        breaks = self._count - 1
        if data.count(b"\n") != 2 * breaks or data.count(b"\x00") != breaks or b"\r" in data:
            # A value holds a line break, or a NUL: the lines are not the template's.
            return self._slow(values)
        raw = data.split(b"\n\x00\n")
        if max(self._fixed_longest, *map(len, raw)) <= MAX_LINE or (
            self._last_may_vanish and not raw[-1]
        ):
            return self._slow(values)
        encoded = binascii.b2a_qp(data, istext=True).decode("ascii").split(_ENCODED_SEPARATOR)
        # set_content's rule: quoted-printable unless base64 is shorter on the first ten
        # lines (with their line breaks); base64 of n bytes is 4 characters for every 3
        # begun, and a newline.
        sniffed = self._sniff_raw + sum(len(raw[n]) for n in self._sniffed_values)
        qp_length = self._sniff_encoded + sum(len(encoded[n]) for n in self._sniffed_values)
        if qp_length > 4 * -(-sniffed // 3) + 1:
            return self._slow(values)
        return "quoted-printable", self._encoded.format(*encoded)

    def _slow(self, values: Sequence[str]) -> tuple[str, str]:
        """A body that is not quoted-printable, or whose lines a value changed."""
        return encode_text(self._template.format(*values), exact=False)
