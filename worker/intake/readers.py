"""Bytes to polars: encodings, delimiters, header matching and file kinds.

Everything is read as text (no type inference): the rules decide what a value
means, so that ``0012`` stays ``0012`` and a bad amount is a row error, not a
read failure.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from worker.errors import FileRejected
from worker.intake import workbooks

#: Bytes polars' streaming CSV reader parses at a time. Its default reads far ahead of
#: the chunks we take: 1 MiB halves the reader's memory (about 525 to 250 MB on a
#: 10M-row file) and is no slower. Set once here, before any scan; a value in the
#: environment is kept.
CSV_READ_BYTES = 1 << 20
os.environ.setdefault("POLARS_CSV_CHUNK_SIZE", str(CSV_READ_BYTES))

HEAD_BYTES = 64 * 1024
BLOCK = 1 << 20
#: Files larger than this have their text checked (:func:`first_bad_line`) beside the
#: reading, not before it: the check decodes every byte in Python's codec, 0.35 s of a
#: 297 MB file that polars' reading then waited for. Its verdict is taken when the last
#: rows have been read, before anything is made of them.
CHECK_BESIDE_BYTES = 4 << 20

#: What :func:`first_bad_line` found: the line and why, or None for good text.
BadLine = tuple[int, str] | None
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

#: Binary formats ERPs export by mistake, told apart for a clearer message.
MAGIC = (
    (b"PK\x03\x04", "a zip archive (a workbook? name it .xlsx, .xlsm or .ods)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or Office file: save it as CSV"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
)


#: Columns that tell a CSV file's kind, with the columns it cannot do without.
@dataclass(frozen=True)
class Signature:
    """How a kind's header is told apart: any of ``names`` present (and none of
    ``unless``), and the columns it must have. ``json``: JSON documents are this kind."""

    kind: str
    names: frozenset[str]
    required: tuple[str, ...]
    json: bool = False
    unless: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Table:
    """A readable CSV: where its UTF-8 text is, how it is delimited, what its columns are."""

    path: Path
    kind: str
    separator: str
    #: Normalised header names, in file order (duplicates suffixed ``__2``...).
    columns: tuple[str, ...]
    #: ``csv`` or ``json`` (batch requests only).
    format: str = "csv"
    #: ``\r`` for files from classic Mac Excel ("CSV (Macintosh)"), else ``\n``.
    eol: str = "\n"
    #: The text check of a large file, running beside the reading (:func:`check_text`).
    text_check: Future[BadLine] | None = field(default=None, compare=False, repr=False)

    def scan(self) -> pl.LazyFrame:
        return pl.scan_csv(
            self.path,
            separator=self.separator,
            infer_schema=False,
            new_columns=list(self.columns),
            truncate_ragged_lines=False,
            quote_char='"',
            eol_char=self.eol,
        ).with_row_index("line_number", offset=2)

    def batches(self, rows: int) -> Iterator[pl.DataFrame]:
        """The data rows in chunks of ``rows``, with their record-based ``line_number``."""
        try:
            yield from self.scan().collect_batches(chunk_size=rows)
        except pl.exceptions.PolarsError as exc:
            # A byte that is not text explains what polars refused better than polars.
            self.checked()
            line, why = locate_problem(self)
            where = f"line {line}: " if line else ""
            raise FileRejected(
                "UNREADABLE_FILE", f"{where}not parseable as CSV: {why or _first_line(exc)}", line
            ) from exc
        self.checked()

    def checked(self) -> None:
        """Wait for the text check running beside the reading; FileRejected if it found a
        NUL or undecodable byte."""
        if self.text_check is not None:
            _reject_bad(self.text_check.result())


def locate_problem(table: Table) -> tuple[int | None, str | None]:
    """The record (header = 1) where a CSV that polars refused goes wrong, read again
    record by record. Only on the error path: a per-record loop is fine here."""
    width = len(table.columns)
    number = 1
    with open(table.path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=table.separator, strict=True)
        try:
            for number, record in enumerate(reader, start=1):
                if number > 1 and len(record) > width:
                    return number, f"{len(record)} fields where the header has {width}"
        except csv.Error as exc:
            return number + 1, f"{exc}: a quoted field is never closed or is malformed"
    return None, None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def sniff_encoding(path: Path, fallback: str | None) -> str:
    """``utf-8``, ``utf-8-sig``, ``utf-16`` (with BOM), or the configured fallback."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    return "utf-8"


def first_bad_line(path: Path, encoding: str) -> tuple[int, str] | None:
    """The physical line number and reason of the first NUL or undecodable byte, if any.

    Lines are counted only once a bad byte is found: counting every block's newlines
    cost as much as decoding it, on every good file."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            if b"\x00" in block:
                at = offset + block.index(b"\x00")
                return _line_at(path, at), "binary content (a NUL byte); expected CSV or JSON text"
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return _line_at(path, offset + exc.start), (
                    f"byte 0x{block[exc.start]:02x} is not valid {encoding}"
                )
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return _line_at(path, offset), f"the file ends inside a {encoding} character"
    return None


def _line_at(path: Path, offset: int) -> int:
    """The line (1-based) holding byte ``offset``; only on the error path."""
    lines, left = 1, offset
    with open(path, "rb") as fh:
        while left > 0 and (block := fh.read(min(BLOCK, left))):
            lines += block.count(b"\n")
            left -= len(block)
    return lines


def to_utf8(source: Path, target: Path, encoding: str) -> Path:
    """Transcode to UTF-8 in blocks (memory stays flat), naming the first bad line on failure."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "w", encoding="utf-8", newline="") as dst:
        while block := src.read(BLOCK):
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise FileRejected(
                    "UNREADABLE_FILE",
                    f"line {line}: not valid {encoding} text ({exc.reason})",
                    line=line,
                ) from exc
            if "\x00" in text:
                raise FileRejected(
                    "UNREADABLE_FILE", f"line {line}: binary content (a NUL character)", line=line
                )
            line += text.count("\n")
            dst.write(text)
        try:
            dst.write(decoder.decode(b"", final=True))
        except UnicodeDecodeError as exc:
            raise FileRejected(
                "UNREADABLE_FILE",
                f"line {line}: the file ends inside a {encoding} character ({exc.reason})",
                line=line,
            ) from exc
    return target


def check_text(path: Path, encoding: str) -> Future[BadLine] | None:
    """Reject binary files (NUL bytes, archives) and undecodable text, naming the line.

    A file above :data:`CHECK_BESIDE_BYTES` is checked in a thread of its own: the
    returned future, for :meth:`Table.checked` once the file is read."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head.strip(b" \t\r\n\x00\xef\xbb\xbf"):
        raise FileRejected("EMPTY_FILE", "the file has no data rows")
    if encoding == "utf-16":
        return None
    for magic, what in MAGIC:
        if head.startswith(magic):
            raise FileRejected("UNREADABLE_FILE", f"line 1: {what}, not CSV or JSON text", line=1)
    if os.stat(path).st_size > CHECK_BESIDE_BYTES:
        return _beside(first_bad_line, path, "utf-8")
    _reject_bad(first_bad_line(path, "utf-8"))
    return None


def _reject_bad(bad: BadLine) -> None:
    if bad:
        raise FileRejected("UNREADABLE_FILE", f"line {bad[0]}: {bad[1]}", line=bad[0])


def _beside(check: Callable[[Path, str], BadLine], path: Path, encoding: str) -> Future[BadLine]:
    """``check(path, encoding)`` in a thread of its own. The codec holds the interpreter's
    lock a block at a time, while polars reads without it: the two overlap."""
    future: Future[BadLine] = Future()

    def run() -> None:
        try:
            future.set_result(check(path, encoding))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="text-check", daemon=True).start()
    return future


def head_text(path: Path, encoding: str) -> str:
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    return head.decode(encoding, errors="replace").lstrip("\ufeff")


def is_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def normalise(names: list[str]) -> tuple[list[str], list[str]]:
    """Trimmed lower-case names, and the duplicates among them."""
    seen: dict[str, int] = {}
    out, duplicates = [], []
    for raw in names:
        name = raw.strip().strip("\ufeff").lower()
        if name in seen:
            seen[name] += 1
            duplicates.append(name)
            name = f"{name}__{seen[name]}"
        else:
            seen[name] = 1
        out.append(name)
    return out, duplicates


def read_header(text: str, kinds: Sequence[Signature]) -> tuple[str, list[str]]:
    """The delimiter (comma or semicolon) and the header record's fields."""
    best: tuple[int, str, list[str]] = (-1, ",", [])
    for separator in (",", ";"):
        try:
            header = next(csv.reader(io.StringIO(text), delimiter=separator), [])
        except csv.Error:
            continue
        known = sum(1 for h in header if any(h.strip().lower() in s.required for s in kinds))
        score = known * 1000 + len(header)
        if score > best[0]:
            best = (score, separator, header)
    return best[1], best[2]


def detect_kind(columns: list[str], kinds: Sequence[Signature]) -> Signature:
    present = set(columns)
    for signature in kinds:
        if signature.names & present and not signature.unless & present:
            return signature
    told = ", ".join(f"{s.kind} {' or '.join(sorted(s.names))}" for s in kinds if s.names)
    raise FileRejected(
        "UNKNOWN_FILE_KIND", f"the header names no known file kind (it needs: {told})", line=1
    )


def open_table(
    path: Path,
    work: Path,
    kinds: Sequence[Signature],
    fallback_encoding: str | None = None,
    *,
    timezone: str = "UTC",
) -> Table:
    """Check a CSV file's text and header; returns a :class:`Table` ready to scan.

    A workbook (by its name's suffix: ``.xlsx``, ``.xlsm``, ``.ods``) is first written out
    as a UTF-8 CSV under ``work``, its date-time cells taken in ``timezone``; from there it
    is read as any CSV is."""
    sheet = workbooks.is_workbook(path)
    if sheet:
        path = workbooks.to_csv(path, work / "source.sheet.csv", timezone)
        fallback_encoding = None
    encoding = sniff_encoding(path, fallback_encoding)
    if encoding == "utf-8" and fallback_encoding and first_bad_line(path, "utf-8"):
        encoding = fallback_encoding
    text_check = check_text(path, encoding if encoding in ("utf-8", "utf-8-sig") else "utf-16")
    if encoding not in ("utf-8", "utf-8-sig"):
        path = to_utf8(path, work / "source.utf8.csv", encoding)
        encoding = "utf-8"
    text = head_text(path, "utf-8")
    if is_json(text) and not sheet:
        reads_json = [s.kind for s in kinds if s.json]
        if not reads_json:
            raise FileRejected("UNKNOWN_FILE_KIND", "no file kind is read from JSON", line=1)
        table = Table(
            path=path,
            kind=reads_json[0],
            separator="",
            columns=(),
            format="json",
            text_check=text_check,
        )
        # JSON is read whole elsewhere, not through batches(): checked here.
        table.checked()
        return table
    eol = "\r" if "\r" in text and "\n" not in text else "\n"
    separator, header = read_header(text.replace("\r", "\n") if eol == "\r" else text, kinds)
    columns, duplicates = normalise(header)
    signature = detect_kind(columns, kinds)
    required = signature.required
    repeated = sorted(set(duplicates) & set(required))
    if repeated:
        raise FileRejected(
            "UNREADABLE_FILE",
            f"line 1: column {', '.join(repeated)} appears more than once",
            line=1,
        )
    missing = [c for c in required if c not in columns]
    if missing:
        raise FileRejected("MISSING_COLUMN", f"missing column(s): {', '.join(missing)}", line=1)
    return Table(
        path=path,
        kind=signature.kind,
        separator=separator,
        columns=tuple(columns),
        eol=eol,
        text_check=text_check,
    )


def _json(text: str, line: int | None = None) -> object:
    try:
        return json.loads(text)
    except RecursionError as exc:
        where = f"line {line}: " if line else ""
        raise FileRejected("UNREADABLE_FILE", f"{where}JSON nested too deeply", line) from exc


def read_json_documents(path: Path) -> list[object]:
    """A JSON object, a JSON array, or JSON Lines, as a list of documents."""
    encoding = sniff_encoding(path, None)
    text = path.read_bytes().decode(encoding if encoding != "utf-16" else "utf-16")
    text = text.lstrip("\ufeff")
    try:
        doc = _json(text)
    except json.JSONDecodeError:
        docs = []
        # JSON Lines are split on LF only: U+2028 and friends are legal inside JSON strings.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                docs.append(_json(line, number))
            except json.JSONDecodeError as exc:
                raise FileRejected(
                    "UNREADABLE_FILE", f"line {number}: not valid JSON ({exc.msg})", line=number
                ) from exc
        return docs
    return doc if isinstance(doc, list) else [doc]
