"""What a file kind gives the pipeline: a base whose hooks do nothing by default.

The pipeline (``worker.pipeline.stages``) owns the stages and the bookkeeping that
is the same for every kind: leases, transitions, result names, moving the original,
whole-file rejection. A kind owns what differs: how its rows are validated,
processed, written as results and reported. It overrides only the hooks it needs,
so the pipeline never asks which kind it holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import polars as pl

from notifications.prepared import Prepared
from worker.intake.readers import Signature, Table
from worker.pipeline import chunks
from worker.pipeline.check import Report
from worker.settings import Settings
from worker.state import Connection, File, Store

if TYPE_CHECKING:
    from worker.pipeline.runtime import Runtime


#: Rejected rows a summary lists (the administrators' email shows them).
FIRST_ERRORS = 20


@dataclass
class Summary:
    """What validation found in a whole file."""

    rows: int = 0
    valid: int = 0
    rejected: int = 0
    #: Rows naming what exists already with the same content (SPEC 13): neither valid
    #: (nothing is created) nor rejected (not a failure for max_error_rate).
    exists: int = 0
    chunks: int = 0
    unknown_columns: list[str] = field(default_factory=list)
    #: The first rejected rows: (line_number, reference, errors).
    first_errors: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0

    def count(
        self,
        checked: pl.DataFrame,
        rejected_when: pl.Expr | None = None,
        first_errors: tuple[str, str, str] = ("line_number", "merchant_reference", "errors"),
        exists_when: pl.Expr | None = None,
        chunks: int = 1,
    ) -> None:
        """Add a validated chunk; ``first_errors`` names the line, reference and errors
        columns of the rejected rows it lists (the first :data:`FIRST_ERRORS`);
        ``exists_when`` marks the rows that are neither valid nor rejected; ``chunks``:
        0 for a part of a chunk, whose chunk is counted once it is complete."""
        rejected = checked.filter(~pl.col("valid") if rejected_when is None else rejected_when)
        exists = 0 if exists_when is None else int(checked.select(exists_when.sum()).item())
        self.rows += len(checked)
        self.rejected += len(rejected)
        self.exists += exists
        self.valid += len(checked) - len(rejected) - exists
        self.chunks += chunks
        room = FIRST_ERRORS - len(self.first_errors)
        if room > 0:
            self.first_errors.extend(rejected.head(room).select(first_errors).rows())


#: A small file's part of a grouped validation: its record, table and one chunk of rows.
SmallFile = tuple[File, Table, pl.DataFrame]


class FileKind:
    """One kind of file. Subclasses set the class attributes and override the hooks."""

    #: The kind's name, in ``files.kind``, the log and ``invoice-worker template``.
    name: ClassVar[str] = ""
    #: How its header is told apart, and the columns it must have.
    signature: ClassVar[Signature]
    #: Appended to the file's name for its results file.
    result_suffix: ClassVar[str] = ".results.csv"
    #: Whether administrators get an email after validation.
    reports_validation: ClassVar[bool] = False
    #: Whether ``max_error_rate`` applies.
    error_rate_applies: ClassVar[bool] = False
    #: Whether small files of this kind are validated together (``validate_many``).
    groups_small_files: ClassVar[bool] = False

    def validate(self, rt: Runtime, file: File, table: Table) -> Summary:
        """Called to check every row; keeps what processing needs under ``rt.work(file)``."""
        raise NotImplementedError

    def validate_many(self, rt: Runtime, small: list[SmallFile]) -> list[Summary]:
        """Called with small files of this kind when it ``groups_small_files``, to
        validate them in one go; each gets what its own ``validate`` would give it."""
        raise NotImplementedError

    def reserve(self, rt: Runtime, conn: Connection, summary: Summary) -> int | None:
        """Called inside the validated commit, to reserve numbers for what processing
        will create."""
        return None

    def release(self, rt: Runtime, conn: Connection, file: File) -> None:
        """Called inside the processed commit, the results out: what waited for them
        (customer emails) may go."""

    def process(self, rt: Runtime, file: File, renew: Callable[[], None]) -> None:
        """Called to apply the valid rows; each unit of work commits with its done-mark."""

    def work_lost(self, rt: Runtime, file: File) -> bool:
        """Called before processing: whether what ``validate`` kept under ``rt.work(file)``
        is gone (the host that validated the file died, and its ``var/`` with it)."""
        return len(chunks.paths(rt.work(file))) < (file.chunks or 0)

    def forget(self, rt: Runtime, conn: Connection, file: File) -> int:
        """Called in a transaction when the file is validated again because its work was
        lost: undo what processing made that validating again would not give back.
        Returns how many rows were undone. The default keeps everything: the kinds whose
        chunks are decided against the state store each decision with its done mark."""
        return 0

    def processed_counts(self, rt: Runtime, file: File) -> dict[str, int]:
        """Called once the file's rows are applied: counts to record on the file beside
        ``created`` (which the pipeline counts itself)."""
        return {}

    def write_results(self, rt: Runtime, file: File, target: Path, created: bool) -> None:
        """Called to write the results file (atomically); ``created`` False when nothing was."""

    def errors_csv(self, rt: Runtime, file: File) -> bytes | None:
        """Called for the attachment: every rejected row as CSV; None when none."""
        return None

    def processing_report(self, rt: Runtime, file: File) -> Prepared | None:
        """Called once the file is processed: the administrators' email, if any."""
        return None

    def check(self, settings: Settings, table: Table, store: Store | None) -> Report:
        """Called by ``invoice-worker validate``: every rule, against the state as it is
        (read only, when there is a state database), nothing written."""
        raise NotImplementedError

    def template(self, expiry: datetime) -> tuple[list[str], list[str]]:
        """The header and an example row, for ``invoice-worker template``."""
        raise NotImplementedError

    def csv_template(self, expiry: datetime) -> str:
        header, row = self.template(expiry)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerow(row)
        return out.getvalue()


class Kinds:
    """The registry: the kinds a file can be, in the order their headers are tried."""

    def __init__(self, kinds: Iterable[FileKind]) -> None:
        self._kinds = {kind.name: kind for kind in kinds}

    def __iter__(self) -> Iterator[FileKind]:
        return iter(self._kinds.values())

    def get(self, name: str | None) -> FileKind | None:
        return self._kinds.get(name or "")

    @property
    def names(self) -> list[str]:
        return list(self._kinds)

    @property
    def signatures(self) -> Sequence[Signature]:
        return [kind.signature for kind in self]
