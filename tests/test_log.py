"""Log lines: one per event, key=value, unforgeable, no secrets."""

from __future__ import annotations

import json
import logging

from worker import log


def render(fmt: str, name: str, /, **fields) -> str:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, name, None, None)
    record.event = name
    record.fields = fields
    return log.EventFormatter(fmt).format(record)


def test_an_event_is_one_line_of_key_value_pairs():
    line = render("text", "file.received", file_id=3, name="march.csv")
    assert line.endswith("INFO    file.received file_id=3 name=march.csv")


def test_a_value_from_a_file_cannot_add_a_line_or_a_field():
    line = render("text", "file.received", name='evil.csv\n2026 ERROR forged=1 x="y"')
    assert "\n" not in line
    assert 'name="evil.csv\\n2026 ERROR forged=1 x=\\"y\\""' in line


def test_json_lines_carry_the_same_fields():
    doc = json.loads(render("json", "file.processed", file_id=3, name="a\rb"))
    assert doc["event"] == "file.processed" and doc["name"] == "a\rb" and doc["file_id"] == 3


def test_secrets_are_masked(caplog):
    with caplog.at_level(logging.INFO, logger="invoice_worker"):
        log.event("smtp.login", smtp_password="hunter2", webhook_secret="s3cret")
    assert "hunter2" not in caplog.text and "s3cret" not in caplog.text
    assert log.redact_url("smtp://user:hunter2@host:587") == "smtp://user:***@host:587"
