"""Result files for the ERP: written whole under a hidden temp name, then renamed.

CSV results are UTF-8 without BOM, comma-separated, RFC 4180 quoted, and a
text cell that a spreadsheet would run as a formula is prefixed with ``'``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl

from worker.intake.names import NAME_MAX, safe_stem

FORMULA_START = r"^[=+\-@\t\r]"


def formula_safe(expr: pl.Expr) -> pl.Expr:
    """Prefix ``'`` to text a spreadsheet would evaluate (OWASP CSV injection)."""
    return pl.when(expr.str.contains(FORMULA_START)).then(pl.lit("'") + expr).otherwise(expr)


def formula_safe_text(text: str) -> str:
    return "'" + text if re.match(FORMULA_START, text) else text


RESULT_SUFFIXES = (".results.csv", ".results.json", ".error.json")


def result_stem(folder: Path, name: str, file_id: int, taken: Callable[[str], bool]) -> str:
    """The stem every result of a file shares: ``<name>``, or ``<name>.<id>`` when an
    earlier file's result already has it. Chosen once per file and recorded."""
    reserve = len(f".{file_id}") + max(len(s) for s in RESULT_SUFFIXES)
    stem = safe_stem(name, reserve)
    if not taken(stem) and not any((folder / (stem + s)).exists() for s in RESULT_SUFFIXES):
        return stem
    return f"{stem}.{file_id}"


@contextlib.contextmanager
def atomic_file(target: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a hidden temp file beside ``target``; fsync and rename only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name[: NAME_MAX - 5]}.tmp")
    kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_csv_frames(target: Path, frames: Iterable[pl.DataFrame], columns: Iterable[str]) -> None:
    """Frames appended under one header, atomically."""
    columns = list(columns)
    with atomic_file(target, "wb") as fh:
        fh.write((",".join(columns) + "\r\n").encode())
        for frame in frames:
            frame.select(columns).write_csv(fh, include_header=False, line_terminator="\r\n")


def write_json(target: Path, doc: Any) -> None:
    with atomic_file(target) as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


def error_doc(file_name: str, code: str, message: str, line: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"file": file_name, "code": code, "message": message}
    if line is not None:
        doc["line"] = line
    return doc
