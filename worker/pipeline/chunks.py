"""Chunk storage: a file's work in progress, as Arrow IPC files under ``var/work/<id>/``.

Validation writes ``chunk-NNNNN.arrow`` (every row's errors and what processing
needs); a kind may keep other series beside them (``<prefix>-NNNNN.arrow``). Each
is written under a hidden name, then renamed, so a crash never leaves half a chunk.

Arrow IPC with LZ4, not Parquet: a chunk is written once and read back a few times
on the same host, soon after. Encoding Parquet was half of the validating thread's
time on a 1M-row file (2.2 s); IPC writes the same frames at a third of that, and
reads them as fast, for files a third larger. Chunks of an earlier version's
Parquet are not read: a file left mid-way by one is found with its work lost, and
made again from its original (``worker.pipeline.remake``), as after a crash.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import polars as pl

from worker.intake.readers import Table

#: A chunk file's suffix; LZ4 frames, which polars and pyarrow both read and write.
SUFFIX = ".arrow"
COMPRESSION: Final = "lz4"


def path(folder: Path, index: int, prefix: str = "chunk") -> Path:
    return folder / f"{prefix}-{index:05d}{SUFFIX}"


def paths(folder: Path, prefix: str = "chunk") -> list[tuple[int, Path]]:
    """``(index, path)`` of each chunk of the series ``prefix``, in order."""
    return [(int(p.stem.split("-")[1]), p) for p in sorted(folder.glob(f"{prefix}-*{SUFFIX}"))]


def clear(folder: Path, prefix: str = "chunk") -> None:
    """The folder, made if need be, without the chunks of an earlier try."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{prefix}-*{SUFFIX}"):
        old.unlink()


def write(folder: Path, index: int, frame: pl.DataFrame, prefix: str = "chunk") -> None:
    target = path(folder, index, prefix)
    tmp = folder / f".{target.stem}.tmp"
    frame.write_ipc(tmp, compression=COMPRESSION)
    tmp.replace(target)
    recent.put(target, frame)


class Writer:
    """One chunk written a part at a time, a row group each, so that a large chunk is never
    whole in memory: holding a chunk's parts until it was complete cost validation 100 MB
    of a 500 MB peak, far more than their size. A chunk of one part is written as
    :func:`write` writes it. Under a hidden name until :meth:`close`, as there."""

    def __init__(self, folder: Path, index: int, prefix: str = "chunk") -> None:
        self.folder, self.index, self.prefix = folder, index, prefix
        self._target = path(folder, index, prefix)
        self._tmp = folder / f".{self._target.stem}.tmp"
        self._first: pl.DataFrame | None = None
        self._schema = pl.Schema()
        self._writer: Any = None

    def add(self, part: pl.DataFrame) -> None:
        if self._writer is None and self._first is None:
            self._first = part
            return
        if self._writer is None:
            # Imported here, as ``validation.tokens`` does: only validating processes load it.
            import pyarrow.ipc as ipc

            assert self._first is not None
            first, self._schema, self._first = self._first.to_arrow(), self._first.schema, None
            options = ipc.IpcWriteOptions(compression=COMPRESSION)
            self._writer = ipc.new_file(self._tmp, first.schema, options=options)
            self._writer.write_table(first)
        if part.schema != self._schema:
            # A column all null in one part may have another type than in the first.
            part = part.cast(self._schema)
        self._writer.write_table(part.to_arrow())

    def close(self) -> None:
        if self._writer is None:
            write(
                self.folder,
                self.index,
                self._first if self._first is not None else pl.DataFrame(),
                self.prefix,
            )
            return
        self._writer.close()
        self._tmp.replace(self._target)


def read_parquet_series(folder: Path, prefix: str) -> Iterator[tuple[int, pl.DataFrame]]:
    """``(index, frame)`` of each Parquet file of the series ``prefix``: what a version
    before Arrow IPC chunks left that is still read (decisions kept beside the chunks
    before migration m013)."""
    for source in sorted(folder.glob(f"{prefix}-*.parquet")):
        yield int(source.stem.split("-")[1]), pl.read_parquet(source)


def read(source: Path, columns: list[str] | None = None) -> pl.DataFrame:
    return recent.read(source, columns)


def read_all(
    folder: Path, prefix: str = "chunk", columns: list[str] | None = None
) -> Iterator[tuple[int, pl.DataFrame]]:
    """``(index, chunk)`` of each chunk in order, only ``columns`` of it when given."""
    for index, source in paths(folder, prefix):
        yield index, recent.read(source, columns)


def rows_where(
    folder: Path, where: pl.Expr, columns: list[pl.Expr | str], prefix: str = "chunk"
) -> pl.DataFrame:
    """The rows of every chunk that ``where`` keeps, as ``columns``: each chunk read for
    the columns these name alone, one chunk at a time, so that a few rows out of millions
    never cost the chunks' whole width (reading 10M rows whole for the 1 % rejected made
    the peak of a file). A lazy scan of all the chunks at once held three times the
    memory of this for IPC files (108 MiB against 35 for a 3M-row file's 60 chunks)."""
    exprs = [where, *(pl.col(c) if isinstance(c, str) else c for c in columns)]
    needed = sorted({name for e in exprs for name in e.meta.root_names()})
    frames = [
        _compact(recent.read(source, needed).filter(where).select(columns))
        for _, source in paths(folder, prefix)
    ]
    return pl.concat(frames) if frames else pl.DataFrame()


def _compact(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its own copy of its strings. polars' strings point into the buffers
    they were read into, so a few rows filtered out of a chunk kept all of that chunk's
    text alive: about 1.8 MiB a chunk, so some 360 MiB for a 10M-row file's 200.
    Appending nothing writes each string anew (a cast, or a trip through Arrow, kept
    half or all of it)."""
    return frame.with_columns(pl.col(pl.String) + "")


def one_chunk(table: Table, chunk_rows: int) -> pl.DataFrame | None:
    """The table's rows when they make exactly one chunk, else None."""
    batches = list(itertools.islice(table.batches(chunk_rows), 2))
    return batches[0] if len(batches) == 1 else None


class RecentChunks:
    """The small chunks this process wrote last, kept in memory: a small file's later
    stages read its chunk three times just after it was written, and reading a file
    costs more than their work. Keyed by the file's inode, mtime and size, so a chunk
    written again (a re-run) is never mistaken for the one kept. Bounded by rows, not
    chunks: each thread may be through a group of small files at once."""

    def __init__(self, max_rows: int = 10_000, keep_rows: int = 160_000, keep: int = 1024) -> None:
        self.max_rows = max_rows
        self.keep_rows = keep_rows
        self.keep = keep
        self._frames: OrderedDict[tuple[str, int, int, int], pl.DataFrame] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(source: Path) -> tuple[str, int, int, int]:
        info = source.stat()
        return (str(source), info.st_ino, info.st_mtime_ns, info.st_size)

    def put(self, source: Path, frame: pl.DataFrame) -> None:
        if len(frame) > self.max_rows:
            return
        key = self._key(source)
        with self._lock:
            old = self._frames.pop(key, None)
            self._rows += len(frame) - (len(old) if old is not None else 0)
            self._frames[key] = frame
            while self._rows > self.keep_rows or len(self._frames) > self.keep:
                self._rows -= len(self._frames.popitem(last=False)[1])

    def read(self, source: Path, columns: list[str] | None = None) -> pl.DataFrame:
        with self._lock:
            frame = self._frames.get(self._key(source))
        if frame is None:
            return pl.read_ipc(source, columns=columns)
        return frame.select(columns) if columns else frame


recent = RecentChunks()
