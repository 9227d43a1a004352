"""A body encoded from its template's lines is the body ``encode_text`` encodes.

``notifications.bodies`` encodes a template's fixed lines once and only the lines
holding a value per email; these compare it with ``mime.encode_text(..., exact=False)``
on the filled text, to the byte, for the customer email's own templates and for
generated ones (short and long lines, trailing blanks, lone dots, braces, few lines).
"""

from __future__ import annotations

import random
import re

from hypothesis import given
from hypothesis import strategies as st
from test_mime import EXAMPLES, MERCHANT, TEXT, invoice

from notifications import customers, mime
from notifications.bodies import BodyTemplate
from notifications.customers import invoice_wire

#: Characters that trip encoders up (blanks before a line end, a lone dot, ``=``, text
#: in Arabic script that base64 writes shorter), often.
TRICKY = st.sampled_from(list(" \t.=éلل\u202f"))
#: Fixed text for template lines.
FIXED = st.text(
    st.one_of(st.characters(codec="utf-8", exclude_characters="\r\n{}\x00"), TRICKY),
    max_size=90,
)
LINE = st.lists(st.one_of(FIXED, st.integers(0, 2).map(lambda i: f"{{{i}}}")), max_size=4).map(
    "".join
)
TEMPLATES = st.tuples(st.lists(LINE, min_size=1, max_size=14), st.booleans()).map(
    lambda t: "\n".join(t[0]) + ("\n" if t[1] else "")
)
#: Values of one line each, as most are: the fast path's.
ONE_LINE = st.text(
    st.one_of(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), TRICKY),
    max_size=120,
)


class NoSlowPath(BodyTemplate):
    def _slow(self, values):  # type: ignore[no-untyped-def]
        raise AssertionError("left to encode_text")


def expected(template: str, values: list[str]) -> tuple[str, str]:
    return mime.encode_text(template.format(*values), exact=False)


@EXAMPLES
@given(template=TEMPLATES, values=st.lists(TEXT, min_size=3, max_size=3))
def test_a_body_from_its_template_is_the_one_encode_text_writes(template, values):
    assert BodyTemplate(template).encode(values) == expected(template, values)


@EXAMPLES
@given(template=TEMPLATES, values=st.lists(ONE_LINE, min_size=3, max_size=3))
def test_values_of_one_line_give_encode_texts_body_from_the_templates_lines(template, values):
    want = expected(template, values)
    assert BodyTemplate(template).encode(values) == want
    if want[0] == "quoted-printable" and "{" in template and template.endswith("\n"):
        # Quoted-printable from the encoded lines alone: never by encoding the whole body.
        assert NoSlowPath(template).encode(values) == want


@EXAMPLES
@given(template=TEMPLATES, values=st.lists(TEXT, min_size=3, max_size=3))
def test_braces_and_fixed_lines_come_out_as_the_template_has_them(template, values):
    doubled = template.replace("{", "{{").replace("}", "}}")
    assert BodyTemplate(doubled).encode(values) == expected(doubled, values)


def test_a_template_with_a_carriage_return_is_encoded_as_encode_text_encodes_it():
    template = "a\r\n{0}\r" + "b" * 90 + "\n"
    assert BodyTemplate(template).encode(["x"]) == expected(template, ["x"])


@EXAMPLES
@given(
    name=st.one_of(st.none(), TEXT),
    language=st.sampled_from(["en", "fr", "rw", "ar"]),
    amount=st.integers(1, 9_999_999_999),
    description=st.one_of(st.none(), TEXT, st.just("x" * 300), st.just("ل" * 200)),
    link=st.sampled_from(["https://pay.example.com/pay/a?b=1&c=2", "javascript:alert(1)"]),
)
def test_a_customer_email_from_its_templates_is_the_same_bytes_as_from_its_text(
    name, language, amount, description, link
):
    inv = invoice(name=name, language=language, amount=amount, description=description, link=link)
    c = customers.content(MERCHANT, inv)  # makes the shape's Pieces
    random.seed(7)
    wire = invoice_wire(MERCHANT, inv)
    assert isinstance(wire, mime.Wire)
    random.seed(7)
    want = customers.frame(MERCHANT).build(
        recipient=c.recipient,
        recipient_name=c.recipient_name,
        subject=c.subject,
        text=mime.encode_text(c.text, exact=False),
        html=mime.encode_text(c.html, exact=False),
        message_id=c.message_id,
        date=re.search(r"^Date: (.*)$", wire.data.decode("ascii"), re.MULTILINE).group(1),
    )
    assert want is not None
    assert wire.data == want.data


def test_the_customer_emails_bodies_come_from_their_templates():
    inv = invoice(name="Ada Lovelace", description="Parts, and labour")
    customers.content(MERCHANT, inv)
    t = customers.texts(inv, MERCHANT)
    key, values = customers._shape("en", t, "Parts, and labour", inv.link)
    pieces = customers._pieces[key]
    assert pieces is not None
    text, html = pieces.encode(values)
    assert (text[0], html[0]) == ("quoted-printable", "quoted-printable")
