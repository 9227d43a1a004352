"""What a file kind must provide to the pipeline, and the registry of kinds.

The pipeline (``worker.pipeline``) owns the stages and the bookkeeping that is
the same for every kind: leases, transitions, result names, moving the
original, whole-file rejection. A kind owns what differs: how its rows are
validated, processed, written as results and reported.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from worker.pipeline import Runtime
    from worker.readers import Table

#: A file's row, or a mapping made from it with fields brought up to date.
Record = sqlite3.Row | Mapping[str, Any]


@dataclass
class Summary:
    """What validation found in a whole file."""

    rows: int = 0
    valid: int = 0
    rejected: int = 0
    chunks: int = 0
    unknown_columns: list[str] = field(default_factory=list)
    #: The first rejected rows: (line_number, reference, errors).
    first_errors: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0


class FileKind(Protocol):
    name: str
    #: Appended to the file's name for its results file.
    result_suffix: str
    #: Whether administrators get an email after validation (invoice files).
    reports_validation: bool
    #: Whether ``max_error_rate`` applies (invoice files).
    error_rate_applies: bool

    def validate(self, rt: Runtime, file: sqlite3.Row, table: Table) -> Summary:
        """Check every row; keep what processing needs under ``rt.work(file)``."""

    def reserve(self, rt: Runtime, conn: sqlite3.Connection, summary: Summary) -> int | None:
        """Reserve numbers for what processing will create (inside the validated commit)."""

    def process(self, rt: Runtime, file: sqlite3.Row, renew: Callable[[], None]) -> None:
        """Apply the valid rows; each unit of work commits with its own done-mark."""

    def write_results(self, rt: Runtime, file: sqlite3.Row, target: Path, created: bool) -> None:
        """Write the results file (atomically); ``created`` False when nothing was."""

    def errors_csv(self, rt: Runtime, file: Record) -> bytes | None:
        """Every rejected row as CSV, for the attachment; None when none."""

    def processing_report(self, rt: Runtime, file: Mapping[str, Any]) -> EmailMessage:
        """The administrators' email once the file is processed."""


REGISTRY: dict[str, FileKind] = {}
#: Modules that register a kind when imported; loaded on the first lookup.
BUILTIN = ("worker.invoices", "worker.batches", "worker.payments")


def register(kind: FileKind) -> FileKind:
    REGISTRY[kind.name] = kind
    return kind


def get(name: str | None) -> FileKind | None:
    """The kind called ``name``, or None if no module registers one."""
    for module in BUILTIN:
        importlib.import_module(module)
    return REGISTRY.get(name or "")
