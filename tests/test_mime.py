"""The customer email built for throughput is the standard library's email.

``notifications.mime`` writes what ``email`` writes, to the byte but for the
quoted-printable bodies of customer emails (``binascii``'s, RFC 2045's 76-character
lines, decoding to the same text), and ``Pieces`` fills in what Jinja renders; these
compare them on generated values, hostile ones included.
"""

from __future__ import annotations

import binascii
import quopri
import random
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy, quoprimime
from email.contentmanager import _encode_text  # the reference: what set_content does
from email.message import EmailMessage

import pytest
from babel.dates import format_date, format_time
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_email_safety import INJECTIONS, SCRIPT, SINGLE_HEADERS

from notifications import customers, formats, mime
from notifications.customers import Invoice, Merchant, invoice_email, invoice_wire
from notifications.message import POLICY

MERCHANT = Merchant(name="Kigali Hardware Ltd", sender="billing@kigali-hardware.example")
EXAMPLES = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Text as files bring it: any character, the troublesome ones often.
TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list(" =\t\r\n\x0b\x00\x85\u2028éü€ل\u202f\xa0\"',.<>&;:@()=?")),
    ),
    max_size=120,
)
ADDRESSES = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,30}@[a-z0-9]{1,20}\.(com|rw|example)", fullmatch=True),
    st.sampled_from(["ada@example.com", "Ada@Example.COM", "élise@example.fr", "a" * 70 + "@x.rw"]),
)


def invoice(**fields: object) -> Invoice:
    values: dict[str, object] = {
        "number": 100000000001,
        "email": "ada@example.com",
        "name": "Ada",
        "language": "en",
        "amount": 10000,
        "currency": "USD",
        "expires_at": "2030-01-01T00:00:00.000000Z",
        "description": "Parts",
        "link": "https://pay.example.com/pay/abc",
    }
    values.update(fields)
    return Invoice(**values)  # type: ignore[arg-type]


def headers_and_body(data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """The header lines (unfolded, as written) and the body, split at the first blank line."""
    head, _, body = data.partition(b"\n\n")
    lines: list[tuple[str, str]] = []
    for raw in head.decode("ascii").split("\n"):
        if raw.startswith(" "):
            name, value = lines[-1]
            lines[-1] = (name, value + "\n" + raw)
        else:
            name, _, value = raw.partition(":")
            lines.append((name, value.removeprefix(" ")))
    return lines, body


def reference_for(wire: mime.Wire, msg: EmailMessage) -> bytes:
    """The standard library's bytes for ``msg``, with the wire's boundary and date."""
    boundary = re.search(rb'boundary="([^"]+)"', wire.data)
    date = re.search(rb"^Date: (.*)$", wire.data, re.MULTILINE)
    assert boundary and date
    msg.set_boundary(boundary.group(1).decode())
    msg.replace_header("Date", date.group(1).decode())
    return msg.as_bytes()


def assert_same_parts(got: bytes, want: bytes) -> None:
    """Multipart bodies alike: the same boundary lines and part headers, and each part's
    body the same bytes, or, where either is quoted-printable, decoding to the same
    (``binascii``'s quoted-printable in lines of at most 76 characters)."""
    boundary = re.compile(rb"(?m)^--=+\d+==.*$")
    got_parts, want_parts = boundary.split(got), boundary.split(want)
    assert len(got_parts) == len(want_parts)
    for ours, theirs in zip(got_parts, want_parts, strict=True):
        ours_head, _, ours_body = ours.partition(b"\n\n")
        theirs_head, _, theirs_body = theirs.partition(b"\n\n")
        ours_cte, theirs_cte = encoding(ours_head), encoding(theirs_head)
        qp = b"quoted-printable"
        if ours_cte != qp and theirs_cte != qp:
            assert ours == theirs
            continue
        # A borderline body may go base64 where email's goes quoted-printable: the choice
        # weighs binascii's length; the headers are alike but for that word.
        assert ours_head.replace(ours_cte or b"", b"") == theirs_head.replace(
            theirs_cte or b"", b""
        )
        assert {ours_cte, theirs_cte} <= {qp, b"base64"}
        assert decoded(ours_cte, ours_body) == decoded(theirs_cte, theirs_body)
        if ours_cte == qp:
            assert all(len(line) <= 76 for line in ours_body.split(b"\n"))


def encoding(head: bytes) -> bytes | None:
    found = re.search(rb"Content-Transfer-Encoding: (\S+)", head)
    return found.group(1) if found else None


def decoded(cte: bytes | None, body: bytes) -> bytes:
    if cte == b"quoted-printable":
        return quopri.decodestring(body)
    return binascii.a2b_base64(body)


def assert_same_email(wire: mime.Wire, msg: EmailMessage) -> None:
    """Every header line and the body as ``email`` writes them (:func:`assert_same_parts`);
    To and Subject as ``email`` writes them too, or, where they are encoded words,
    decoding to the same."""
    expected = reference_for(wire, msg)
    got_headers, got_body = headers_and_body(wire.data)
    want_headers, want_body = headers_and_body(expected)
    assert_same_parts(got_body, want_body)
    assert [n for n, _ in got_headers] == [n for n, _ in want_headers]
    ours = message_from_bytes(wire.data, policy=policy.default)
    theirs = message_from_bytes(expected, policy=policy.default)
    for (name, got), (_, want) in zip(got_headers, want_headers, strict=True):
        if got != want:
            assert name in ("To", "Subject") and "=?utf-8?b?" in got, (name, got, want)
            assert str(ours[name]) == str(theirs[name])
    to = ours["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == (
        theirs["To"].addresses[0].display_name,
        theirs["To"].addresses[0].addr_spec,
    )
    assert all(len(line) <= POLICY.max_line_length for line in wire.data.split(b"\n")[:12])
    # The envelope is what smtplib's send_message takes from From and To.
    assert wire.sender == theirs["From"].addresses[0].addr_spec
    assert wire.recipients == (to.addr_spec,)


@EXAMPLES
@given(text=TEXT, width=st.sampled_from([4, 10, 76, 78]))
def test_quoted_printable_is_the_standard_librarys_to_the_byte(text, width):
    latin = text.encode("utf-8", "surrogatepass").decode("latin-1")
    assert mime.qp_body(latin, width) == quoprimime.body_encode(latin, width)


@EXAMPLES
@given(text=TEXT, lines=st.integers(0, 14))
def test_a_body_is_encoded_as_set_content_encodes_it(text, lines):
    body = "\n".join([text] * lines)
    cte, payload = _encode_text(body, "utf-8", None, POLICY)
    ours = mime.encode_text(body)
    assert ours[0] == cte
    assert ours[1].encode("utf-8") == payload.encode("ascii", "surrogateescape")


@EXAMPLES
@given(text=TEXT, lines=st.integers(0, 14))
def test_a_customer_emails_body_decodes_to_what_set_content_encodes(text, lines):
    body = "\n".join([text] * lines)
    cte, payload = _encode_text(body, "utf-8", None, POLICY)
    ours_cte, ours = mime.encode_text(body, exact=False)
    if cte in ("7bit", "8bit"):
        assert (ours_cte, ours.encode("utf-8")) == (cte, payload.encode("ascii", "surrogateescape"))
        return
    # set_content's rule, the shorter on the first ten lines, weighing binascii's
    # quoted-printable: on the border between the two it may choose either way.
    sniff = b"\n".join(body.encode("utf-8").splitlines()[:10]) + b"\n"
    shorter = len(mime.qp_lines(sniff)) <= len(binascii.b2a_base64(sniff))
    assert ours_cte == ("quoted-printable" if shorter else "base64")
    want = decoded(cte.encode(), payload.encode("ascii"))
    assert decoded(ours_cte.encode(), ours.encode("ascii")) == want
    if ours_cte == "quoted-printable":
        assert all(len(line) <= 76 for line in ours.split("\n"))


@EXAMPLES
@given(text=TEXT)
def test_quoted_printable_lines_decode_to_the_text_and_fit_rfc_2045(text):
    data = b"\n".join(text.encode("utf-8", "surrogatepass").splitlines()) + b"\n"
    encoded = mime.qp_lines(data)
    assert quopri.decodestring(encoded.encode("ascii")) == data
    assert all(len(line) <= 76 for line in encoded.split("\n"))
    # Nothing a line could end in that a relay may strip, nor a lone dot (SMTP's end).
    assert all(not line.endswith((" ", "\t")) and line != "." for line in encoded.split("\n"))


@EXAMPLES
@given(
    name=st.one_of(st.none(), TEXT, st.sampled_from(["Ada Lovelace", "O'Brien", "J. Smith"])),
    email=ADDRESSES,
    language=st.sampled_from(["en", "fr", "rw", "ar", "AR", "de", None]),
    amount=st.integers(1, 9_999_999_999),
    currency=st.sampled_from(["USD", "RWF", "JOD", "EUR", "KES"]),
    description=st.one_of(st.none(), TEXT),
    link=st.sampled_from(["https://pay.example.com/pay/abc", "javascript:alert(1)", "=?x"]),
    merchant=st.sampled_from(
        [MERCHANT, Merchant("Shop", "billing@example.org"), Merchant("Bé & <Co>", "b@x.rw")]
    ),
)
def test_a_customer_email_is_the_one_the_standard_library_builds(
    name, email, language, amount, currency, description, link, merchant
):
    inv = invoice(
        name=name,
        email=email,
        language=language,
        amount=amount,
        currency=currency,
        description=description,
        link=link,
    )
    try:
        msg = invoice_email(merchant, inv)
    except ValueError:
        with pytest.raises(ValueError):
            invoice_wire(merchant, inv)
        return
    wire = invoice_wire(merchant, inv)
    if not isinstance(wire, mime.Wire):
        # An address mime leaves to email: the standard library's message itself.
        assert not email.isascii() or not re.fullmatch(r"[!-~]+@[!-~]+", email)
        return
    assert_same_email(wire, msg)


def test_plain_values_give_the_standard_librarys_headers_exactly():
    for language in ("en", "fr", "rw", "ar"):
        inv = invoice(name="Ada Lovelace", language=language)
        wire = invoice_wire(MERCHANT, inv)
        assert isinstance(wire, mime.Wire)
        head, _ = headers_and_body(wire.data)
        want, _ = headers_and_body(reference_for(wire, invoice_email(MERCHANT, inv)))
        if language == "en":
            assert head == want
        # A subject with a no-break space is written as encoded words; the rest is exact.
        assert_same_email(wire, invoice_email(MERCHANT, inv))


@EXAMPLES
@given(
    name=st.one_of(st.none(), TEXT),
    description=st.one_of(st.none(), TEXT, st.just("\x000\x00"), st.just("\x0012\x00 x")),
    language=st.sampled_from(["en", "fr", "rw", "ar"]),
    link=st.sampled_from(["https://pay.example.com/pay/a?b=1&c=2", "javascript:alert(1)"]),
)
def test_the_bodies_are_the_text_jinja_renders(name, description, language, link):
    inv = invoice(name=name, description=description, language=language, link=link)
    t = customers.texts(inv, MERCHANT)
    expected = customers._jinja(language, t, (description or "").strip(), link)
    for _ in range(2):  # the first of a shape is Jinja's own; the next is filled in
        c = customers.content(MERCHANT, inv)
        assert (c.text, c.html) == expected


@pytest.mark.parametrize("attempt", [*INJECTIONS, SCRIPT])
def test_no_field_can_add_a_header_to_a_customer_email(attempt):
    for language in ("en", "ar"):
        wire = invoice_wire(
            Merchant(name=attempt, sender="billing@example.org"),
            invoice(name=attempt, description=attempt, language=language),
        )
        assert isinstance(wire, mime.Wire)
        msg = message_from_bytes(wire.data, policy=policy.default)
        assert "Bcc" not in msg and "Cc" not in msg
        for header in SINGLE_HEADERS:
            assert len(msg.get_all(header) or []) == 1, header
        assert [a.addr_spec for a in msg["To"].addresses] == ["ada@example.com"]
        assert wire.recipients == ("ada@example.com",)
        html = msg.get_body(("html",)).get_content()
        assert "<script" not in html.lower()


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com\r\nBcc: evil@example.com",
        "ada@example.com\n",
        "ada@example.com, evil@example.com",
        "Ada <ada@example.com>, evil@example.com",
    ],
)
def test_an_address_that_is_not_one_plain_address_is_refused(address):
    with pytest.raises(ValueError):
        invoice_email(MERCHANT, invoice(email=address))
    with pytest.raises(ValueError):
        invoice_wire(MERCHANT, invoice(email=address))


def test_a_boundary_that_a_body_contains_is_never_used():
    # Given a body that holds the boundary the next draw would make
    state = random.getstate()
    first = mime.boundary()
    random.setstate(state)
    # When a boundary is drawn for it
    chosen = mime.boundary(f"text\n--{first}--\n")
    # Then it is another one
    assert chosen != first and chosen.startswith("=" * 15)


@EXAMPLES
@given(
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    language=st.sampled_from(["en", "fr", "rw", "ar", "de", None]),
)
def test_an_expiry_reads_as_babel_writes_it(moment, language):
    loc = formats.locale(language)
    glue = str(loc.datetime_formats["long"]).replace("'", "")
    time = format_time(moment, "short", tzinfo=UTC, locale=loc)
    expected = glue.format(f"{time} UTC", format_date(moment, "long", locale=loc))
    assert formats.when(moment.isoformat(), language) == expected


@EXAMPLES
@given(
    units=st.one_of(st.integers(0, 9_999_999_999), st.integers(1, 999)),
    currency=st.sampled_from(["USD", "RWF", "JOD", "EUR", "KES", "JPY", "BHD", "XYZ"]),
    language=st.sampled_from(["en", "fr", "rw", "ar", "de", None]),
)
def test_an_amount_reads_as_babel_writes_it(units, currency, language):
    for _ in range(2):  # the first of a shape is babel's own; the next fills its template
        assert formats.money(units, currency, language) == formats._babel_money(
            units, currency, language
        )


@pytest.mark.parametrize(
    ("link", "button"),
    [
        ("https://pay.example.com/pay/abc", True),
        ("http://pay.example.com/pay/abc", True),
        ("HTTPS://pay.example.com/pay/abc", True),
        ("javascript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("https:evil", True),
        ("", False),
    ],
)
def test_only_http_links_become_buttons(link, button):
    assert (customers.safe_link(link) == link) is button
    assert (customers.safe_link(link) is None) is not button
