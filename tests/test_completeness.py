"""A file is read only once it is complete: a local writer that pauses with the file
open is waited for, however long it pauses (SPEC sections 2 and 11).

Rows created from a file still being written are rows lost: the rest of the file never
reaches an invoice and the ERP is never told. (The same through a real sshd and a real
sshfs mount is in test_mounts.py.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import invoice_csv, invoice_row
from sshd import slow_writer

from worker.settings import Settings

#: Every pause below is several times this: a settle check alone claims the file in the
#: first pause.
SETTLE = 0.2


@pytest.mark.parametrize(
    ("rows", "parts", "pause"),
    [(200, 3, 0.5), (5_000, 4, 1.0), (20_000, 3, 2.0)],
    ids=["200-rows-pausing-0.5s", "5000-rows-pausing-1s", "20000-rows-pausing-2s"],
)
def test_a_local_writer_that_pauses_with_the_file_open_gets_every_row_created_once(
    make_pipeline: Callable[[Settings], Any],
    settings: Settings,
    tmp_path: Path,
    rows: int,
    parts: int,
    pause: float,
) -> None:
    # Given the pipeline watching a local inbox
    h = make_pipeline(settings.with_(settle_seconds=SETTLE))
    source = tmp_path / "export.csv"
    data = invoice_csv([invoice_row(n) for n in range(1, rows + 1)]).encode()
    source.write_bytes(data)
    # When another process writes an invoice file in place, in parts, holding it open
    # through pauses longer than the settle time (an ERP export between queries)
    writer = slow_writer(source, settings.inbox / "invoices.csv", parts, pause)
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err.decode(errors="replace")
    files = h.wait_final(1, timeout=120)
    # Then every row is created, none twice
    refs = [r["merchant_reference"] for r in h.store.all("SELECT merchant_reference FROM invoices")]
    lost = rows - len(set(refs))
    assert len(refs) == len(set(refs)) == rows, (
        f"{lost} of {rows} rows lost, {len(refs) - len(set(refs))} created twice: "
        f"{[(f.name, f.state, f.size, f.rows, f.created) for f in files]}"
    )
    assert set(refs) == {f"REF-{n:06d}" for n in range(1, rows + 1)}
    # And from the file's final bytes: one file, read whole, every row valid
    assert len(files) == 1
    (file,) = files
    assert (file.state, file.size, file.rows, file.created) == ("processed", len(data), rows, rows)
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    assert not [p for p in settings.inbox.iterdir() if not p.name.startswith(".")]
