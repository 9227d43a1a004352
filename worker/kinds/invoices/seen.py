"""The references of a file's earlier reads, kept on disk: the duplicate check across reads.

A file is validated a read (``READ_ROWS`` rows) at a time, and a reference repeated
from an earlier read is a duplicate. The earlier references are kept as 128-bit
fingerprints (two 64-bit hashes with independent seeds): two references share one
with odds of about n^2 / 2^129 (1e-25 for 10M rows), the footing of the 128-bit
payment tokens. polars' hash is stable within a process, and a file's validation
runs in one.

Both hashes are on disk, in two files of raw 64-bit values in the same order, one
read's block after another, in a temporary folder beside the file's chunks. Nothing
of them stays in memory: held there, the first hashes alone were 80 MiB of a 10M-row
file's peak. A lookup streams the first hashes past a table of this read's, a piece
of :data:`PIECE` at a time, from the page cache rather than from memory; only the
blocks whose first hashes met this read's are read whole, for their second hashes: a
repeated reference, or one in 2^64 by chance. Building a table of the earlier hashes
instead would cost the file's whole history again at every read.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

SEEDS = (0x243F6A8885A308D3, 0x13198A2E03707344)
#: First hashes read and looked up at a time: 8 MiB.
PIECE = 1 << 20
#: Bytes of one stored hash.
WIDTH = 8


def fingerprints(refs: pl.Series) -> pl.DataFrame:
    """Each reference's two hashes, ``a`` and ``b``."""
    first, second = SEEDS
    return pl.DataFrame({"a": refs.hash(seed=first), "b": refs.hash(seed=second)})


def _raw(values: pl.Series) -> memoryview:
    """A column of hashes (no nulls) as its native bytes."""
    array = values.to_arrow()
    data = memoryview(array.buffers()[1]).cast("B")
    return data[array.offset * WIDTH : (array.offset + len(array)) * WIDTH]


class SeenReferences:
    """The fingerprints of a file's earlier reads, and the lookup of a read's among them."""

    def __init__(self, folder: Path | None = None) -> None:
        #: Where the temporary folder of hashes goes (made at the first block).
        self.folder = folder
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        #: Hashes stored, and where each block starts among them.
        self._size = 0
        self._starts: list[int] = []
        #: The last read's references (and their fingerprints, once known): stored only
        #: when another read comes, so a one-read file hashes nothing.
        self._last: tuple[pl.Series, pl.DataFrame | None] | None = None

    def close(self) -> None:
        """Remove the hashes' folder (also done when this is collected)."""
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _path(self, column: str) -> Path:
        assert self._dir is not None
        return Path(self._dir.name) / f"{column}.u64"

    def _store(self, prints: pl.DataFrame) -> None:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix=".seen-", dir=self.folder)
        self._starts.append(self._size)
        for column in ("a", "b"):
            with open(self._path(column), "ab") as fh:
                fh.write(_raw(prints[column]))
        self._size += len(prints)

    def _read(self, column: str, start: int, count: int) -> pl.Series:
        """``count`` stored hashes of ``column`` from position ``start``."""
        import pyarrow as pa

        with open(self._path(column), "rb") as fh:
            fh.seek(start * WIDTH)
            data = fh.read(count * WIDTH)
        array = pa.Array.from_buffers(pa.uint64(), count, [None, pa.py_buffer(data)])
        return pl.Series(column, array)

    def _positions(self, wanted: pl.Series) -> pl.Series:
        """The positions of the stored first hashes that are in ``wanted`` (imploded)."""
        return pl.concat(
            self._read("a", start, min(PIECE, self._size - start))
            .is_in(wanted)
            .arg_true()
            .cast(pl.UInt64)
            + start
            for start in range(0, self._size, PIECE)
        )

    def _earlier(self, at: pl.Series) -> pl.DataFrame:
        """The fingerprints of the blocks that hold the positions ``at``."""
        starts = pl.Series(self._starts, dtype=pl.UInt64)
        blocks = (starts.search_sorted(at, side="right") - 1).unique().sort()
        ends = [*self._starts[1:], self._size]
        return pl.concat(
            pl.DataFrame(
                [
                    self._read(column, self._starts[i], ends[i] - self._starts[i])
                    for column in ("a", "b")
                ]
            )
            for i in blocks.to_list()
        )

    def met(self, refs: pl.Series) -> pl.Series:
        """True where a reference was in an earlier read (null references never were);
        then remembers this read's references."""
        if self._last is not None:
            last, prints = self._last
            prints = fingerprints(last) if prints is None else prints
            self._store(prints.filter(last.is_not_null()).unique())
        found = pl.repeat(False, len(refs), eager=True)
        if not self._size:
            self._last = (refs, None)
            return found
        mine = fingerprints(refs)
        self._last = (refs, mine)
        wanted = mine["a"].implode()
        at = self._positions(wanted)
        if at.is_empty():
            return found
        earlier = self._earlier(at).filter(pl.col("a").is_in(wanted))
        hit = mine.with_row_index("i").join(earlier.unique(), on=["a", "b"], how="semi")
        if not hit.is_empty():
            found = found.scatter(hit["i"], True)
        return found & refs.is_not_null()
