"""A corpus of bad and hostile files: each reaches its expected final state, with a result."""

from __future__ import annotations

import json
from email import message_from_bytes, policy

import pytest
from corpus import CORPUS


def only(folder, suffix: str):
    found = [p for p in folder.iterdir() if p.name.endswith(suffix)]
    assert len(found) == 1, [p.name for p in folder.iterdir()]
    return found[0]


@pytest.mark.parametrize(
    ("name", "content", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
def test_each_corpus_file_ends_as_expected(pipeline, settings, name, content, expected):
    (settings.inbox / name).write_bytes(content)
    [file] = pipeline.wait_final(timeout=60)
    assert file.state == expected[0], (file.error_code, file.error_message)
    if expected[0] == "processed":
        assert (file.rows, file.rejected) == expected[1:]
        assert only(settings.outbox, ".results.csv")
        assert len(list(settings.archive.iterdir())) == 1
    else:
        error = json.loads(only(settings.outbox, ".error.json").read_text())
        assert (error["code"], error.get("line")) == expected[1:], error["message"]
        assert len(list(settings.rejected.iterdir())) == 1
    assert not [p for p in settings.inbox.iterdir() if not p.name.startswith(".")]
    # Nothing from the name reaches a header: every email parses to the same few headers.
    pipeline.wait_mail()
    for path in settings.mail.glob("*.eml"):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert set(msg.keys()) <= {
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "Auto-Submitted",  # reports to staff: no vacation replies (RFC 3834)
            "MIME-Version",
            "Content-Type",
        }
        assert "\n" not in msg["Subject"]


def test_result_names_are_safe_for_every_hostile_name(pipeline, settings):
    for i, (_, name, content, _) in enumerate(
        c for c in CORPUS if c[0].startswith(("name-", "formula"))
    ):
        (settings.inbox / name).write_bytes(content.replace(b"REF-", f"R{i}-".encode()))
    files = pipeline.wait_final(6, timeout=60)
    assert {f.state for f in files} == {"processed"}
    for path in settings.outbox.iterdir():
        assert "\n" not in path.name and not path.name.startswith(("-", "."))
        assert len(path.name.encode()) <= 255
