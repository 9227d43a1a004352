"""Kinds whose rows are decided against the state as they are applied (payments,
cancellations): each chunk is decided, applied, and its result rows and done mark
stored, in one transaction.

The result rows go to the state database with the done mark (``worker.state.decided``),
not under ``var/``: the host that finishes a file may not be the one that applied its
first chunks, and an applied decision cannot be made again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import polars as pl

from worker.pipeline import chunks
from worker.pipeline.runtime import Runtime
from worker.state import Connection, File, decided, files
from worker.state import chunks as done

#: Decide a chunk and apply it inside the caller's transaction: its result rows, and
#: how many rows were applied.
Step = Callable[[Connection, pl.DataFrame], tuple[pl.DataFrame, int]]


def apply_chunks(rt: Runtime, file: File, renew: Callable[[], None], step: Step) -> None:
    """Each chunk not yet done, through ``step``, then the file's counts."""
    for index, path in chunks.paths(rt.work(file), "chunk"):
        if done.is_done(rt.store.conn, file.id, index):
            continue
        chunk = chunks.read(path)
        with rt.store.atomic() as conn:
            # Read again under the write lock: another run may have applied it since.
            if done.is_done(conn, file.id, index):
                continue
            results, applied = step(conn, chunk)
            decided.record(conn, file.id, index, results)
            done.mark_done(conn, file.id, index, applied)
        rt.kick_webhooks()
        renew()
    applied = done.created(rt.store, file.id)
    with rt.store.atomic() as conn:
        files.update(conn, file.id, valid=applied, rejected=(file.rows or 0) - applied)


def results(rt: Runtime, file: File) -> Iterator[pl.DataFrame]:
    """The file's result rows, chunk by chunk."""
    stored = dict(decided.read_all(rt.store, file.id))
    # A chunk applied by a version before m013 left its decisions beside it, in var/.
    for index, frame in chunks.read_parquet_series(rt.work(file), "decided"):
        stored.setdefault(index, frame)
    for index in sorted(stored):
        yield stored[index]


def rejected(rt: Runtime, file: File, columns: tuple[str, ...]) -> pl.DataFrame:
    """The file's rejected result rows (``columns``, all text), in one frame."""
    parts = [d.filter(pl.col("status") == "REJECTED") for d in results(rt, file)]
    if parts:
        return pl.concat(parts)
    return pl.DataFrame(schema={c: pl.String for c in columns})
