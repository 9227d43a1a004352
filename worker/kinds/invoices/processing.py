"""Validated chunks become invoices: one transaction per chunk, with its "done" mark.

A chunk's invoices and the row saying the chunk is done commit together, so a
crash leaves either both or neither, and a re-run skips what is done. Numbers
and tokens come from the chunk file, so a re-run creates the same invoices. The rows
that name an invoice with the same content (SPEC 13) are recorded with them.
The SQL is in :mod:`worker.state.invoices`; this module prepares the rows.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from worker.kinds.invoices.existing import settle
from worker.kinds.links import link_prefix
from worker.pipeline import chunks
from worker.state import Store, staging
from worker.state import chunks as done_marks
from worker.state import invoices as invoice_table
from worker.state.files import now_iso


def process_chunk(
    store: Store,
    file_id: int,
    index: int,
    path: Path,
    number_base: int,
    link_base: str,
) -> int | None:
    """Create a chunk's invoices; None when it was already done. Returns the count created."""
    if done_marks.is_done(store.conn, file_id, index):
        return None
    return _create(store, file_id, index, _prepare(store, path, number_base), link_base)


def process_chunks(
    store: Store,
    file_id: int,
    chunks: list[tuple[int, Path]],
    number_base: int,
    link_base: str,
    after_each: Callable[[], None],
) -> None:
    """:func:`process_chunk` for each of ``chunks`` in order, preparing the next one
    (its rows, its staging file) in a thread while this one's are inserted: both
    ADBC and SQLite release the GIL, so on two cores the two overlap."""
    todo = [(i, p) for i, p in chunks if not done_marks.is_done(store.conn, file_id, i)]
    if len(todo) <= 1:
        # One chunk, as every small file has: no thread to start.
        for index, path in todo:
            _create(store, file_id, index, _prepare(store, path, number_base), link_base)
            after_each()
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage") as ahead:
        pending = ahead.submit(_prepare, store, todo[0][1], number_base)
        try:
            for n, (index, _) in enumerate(todo):
                prepared = pending.result()
                if n + 1 < len(todo):
                    pending = ahead.submit(_prepare, store, todo[n + 1][1], number_base)
                _create(store, file_id, index, prepared, link_base)
                after_each()
        finally:
            # Stopped by an error: the chunk prepared ahead is not used, nor its file.
            _discard(pending)


@dataclass(frozen=True, slots=True)
class Staged:
    """A big chunk's rows as the store staged them ahead (:meth:`Store.prepare_stage`):
    a staging file on SQLite."""

    prepared: Any


@dataclass(frozen=True)
class Prepared:
    """A chunk ready to commit: its invoices' rows (in memory, or staged if many) and
    its rows naming an invoice with the same content (``line_number``,
    ``invoice_number``)."""

    rows: pl.DataFrame | Staged
    existing: pl.DataFrame


def _discard(pending: Future[Prepared]) -> None:
    if pending.cancel():
        return
    with contextlib.suppress(BaseException):
        prepared = pending.result()
        if isinstance(prepared.rows, Staged) and isinstance(prepared.rows.prepared, Path):
            prepared.rows.prepared.unlink(missing_ok=True)


def _prepare(store: Store, path: Path, number_base: int) -> Prepared:
    """A chunk's valid rows as ``invoices`` rows, and its existing rows."""
    chunk = chunks.read(path)
    existing = chunk.filter(pl.col("existing").is_not_null()).select(
        "line_number", pl.col("existing").alias("invoice_number")
    )
    rows = chunk.filter(pl.col("valid")).select(
        (pl.col("ordinal") + number_base).alias("invoice_number"), *invoice_table.BOUND_COLUMNS[1:]
    )
    if len(rows) < staging.STAGE_MIN_ROWS:
        return Prepared(rows, existing)
    # A name of its own: a delivery that took over an expired lease must not share it.
    stage = path.with_name(f"{path.stem}.{secrets.token_hex(4)}.stage.db")
    return Prepared(Staged(store.prepare_stage(rows, stage)), existing)


def _create(
    store: Store, file_id: int, index: int, prepared: Prepared, link_base: str
) -> int | None:
    """Commit a prepared chunk: rows bound one by one, or staged (a file is then deleted)."""
    stamp = now_iso()
    prefix = link_prefix(link_base)
    if isinstance(prepared.rows, pl.DataFrame):
        create = invoice_table.bound(file_id, prepared.rows, prefix, stamp, settle)
        return invoice_table.commit_chunk(store, file_id, index, create, prepared.existing)
    with store.stage(prepared.rows.prepared) as name:
        create = invoice_table.staged(file_id, name, prefix, stamp, settle)
        return invoice_table.commit_chunk(store, file_id, index, create, prepared.existing)
