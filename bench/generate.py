"""Seeded invoice files for the benchmark: valid rows plus exactly 1% bad rows of varied kinds.

Two shapes of valid rows, both pure functions of the row's index and the seed
(10M rows are written in 1M-row slices, so memory stays flat, and the bytes
do not depend on the slicing):

- ``realistic`` (the default, :mod:`bench.realistic`): what an ERP exports.
- ``sequential``: the generator before issue 16: ``PREFIX-000000001``
  references, four expiry values, short descriptions. It flatters the
  product (B-tree appends); kept as one named case to show by how much.

Which rows are bad, and how, is drawn by ``random.Random(seed)``: the same
seed gives the same bytes. Expiry dates are far in the future so a file
generated today still validates in years.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import polars as pl

from bench.realistic import Realistic
from rules.invoices import COLUMN_NAMES

HEADER = COLUMN_NAMES
BAD_SHARE = 0.01
SLICE_ROWS = 1_000_000
DEFAULT_SHAPE = "realistic"


class Shape(Protocol):
    name: str

    def frame(self, start: int, end: int) -> pl.DataFrame: ...

    def references(self, indices: list[int]) -> list[str]: ...


@dataclass(frozen=True)
class BadKind:
    """One way a row goes wrong: the column it is reported on, the code it must get, and
    the value that breaks it (usually of that column alone)."""

    name: str
    column: str
    code: str
    #: The bad value for the row at index ``i``; None: an earlier good row's reference.
    value: Callable[[int], str] | None
    #: Other columns the row needs changed for the fault to show.
    also: tuple[tuple[str, str], ...] = ()

    @property
    def error(self) -> str:
        return f"{self.code}({self.column})"


@dataclass(frozen=True)
class Bad:
    """A bad row: its kind, and for a duplicate the earlier (good) row it repeats."""

    kind: BadKind
    source: int = 0

    @property
    def error(self) -> str:
        return self.kind.error


BAD_KINDS: tuple[BadKind, ...] = (
    BadKind("decimal amount", "amount", "INVALID_AMOUNT", lambda i: f"{i % 900 + 100}.50"),
    BadKind("zero amount", "amount", "INVALID_AMOUNT", lambda i: "0"),
    BadKind("negative amount", "amount", "INVALID_AMOUNT", lambda i: f"-{i % 9000 + 1000}"),
    BadKind(
        "amount with separators", "amount", "INVALID_AMOUNT", lambda i: f"1,{i % 900 + 100},000"
    ),
    BadKind("unknown currency", "currency", "INVALID_CURRENCY", lambda i: "US$"),
    BadKind("bad email", "customer_email", "INVALID_EMAIL", lambda i: f"c{i}@@example.com"),
    BadKind("no email", "customer_email", "REQUIRED", lambda i: ""),
    BadKind(
        "past expiry",
        "request_expiry_date",
        "EXPIRY_IN_PAST",
        lambda i: "2020-01-01T00:00:00+00:00",
    ),
    BadKind("bad date", "request_expiry_date", "INVALID_DATE", lambda i: "31/12/2099"),
    BadKind(
        "expiry without offset",
        "request_expiry_date",
        "INVALID_DATE",
        lambda i: "2099-12-31T23:59:00",
    ),
    BadKind("bad language", "language", "INVALID_VALUE", lambda i: "de"),
    BadKind("bad notification", "notification_type", "INVALID_VALUE", lambda i: "WHATSAPP"),
    BadKind("duplicate reference", "merchant_reference", "DUPLICATE_MERCHANT_REFERENCE", None),
    BadKind("bad reference", "merchant_reference", "INVALID_FORMAT", lambda i: f"#ref {i}"),
    BadKind("no service command", "service_command", "REQUIRED", lambda i: ""),
    BadKind("bad phone", "customer_phone", "INVALID_FORMAT", lambda i: "call me"),
    BadKind(
        "SMS without phone",
        "customer_phone",
        "PHONE_REQUIRED_FOR_SMS",
        lambda i: "",
        also=(("notification_type", "SMS"),),
    ),
    BadKind("long name", "customer_name", "TOO_LONG", lambda i: "N" * 41),
    BadKind(
        "long description",
        "order_description",
        "TOO_LONG",
        lambda i: f"Consolidated invoice {i}: " + "services, " * 15,
    ),
    BadKind("bad link command", "link_command", "INVALID_VALUE", lambda i: "SALE"),
    BadKind("bad url", "return_url", "INVALID_FORMAT", lambda i: f"ftp://files{i}"),
)


def bad_rows(rows: int, seed: int) -> dict[int, Bad]:
    """Which rows are bad, and how: ``round(rows * BAD_SHARE)`` of them, never row 0."""
    rng = random.Random(seed)
    count = min(round(rows * BAD_SHARE), max(rows - 1, 0))
    picked = sorted(rng.sample(range(1, rows), count)) if count else []
    chosen = set(picked)
    bad = {}
    for i in picked:
        kind = rng.choice(BAD_KINDS)
        source = 0
        if kind.value is None:
            # A good earlier row (row 0 always is): its reference is a valid first occurrence.
            source = rng.randrange(i)
            while source in chosen:
                source = rng.randrange(i)
        bad[i] = Bad(kind, source)
    return bad


class Sequential:
    """The old shape: every value derived from the index by counting, not hashing."""

    name = "sequential"
    CURRENCIES = ("USD", "RWF", "JOD", "EUR", "KES")
    LANGUAGES = ("en", "ar", "fr", "rw")
    EXPIRIES = (
        "2099-12-31T23:59:00+00:00",
        "2098-06-30T12:00:00+02:00",
        "2097-01-15T08:30:00Z",
        "2099-03-01T00:00:00.250-05:00",
    )

    def __init__(self, seed: int, prefix: str, notification: str) -> None:
        self.prefix = prefix
        self.notification = notification

    def references(self, indices: list[int]) -> list[str]:
        return [f"{self.prefix}-{i:09d}" for i in indices]

    def frame(self, start: int, end: int) -> pl.DataFrame:
        i = pl.int_range(start, end, dtype=pl.Int64, eager=True).alias("i")
        frame = pl.DataFrame({"i": i, "s": i.cast(pl.String)})
        phone = (pl.col("i") % 3 != 0) | pl.lit("SMS" in self.notification)
        return frame.select(
            pl.col("i"),
            pl.lit("PAYMENT_LINK").alias("service_command"),
            (pl.lit(self.prefix + "-") + pl.col("s").str.zfill(9)).alias("merchant_reference"),
            ((pl.col("i") * 7919) % 9_999_900 + 100).cast(pl.String).alias("amount"),
            _cycle(self.CURRENCIES).alias("currency"),
            _cycle(self.LANGUAGES, 7).alias("language"),
            (pl.lit("customer") + pl.col("s") + pl.lit("@mail"))
            .add((pl.col("i") % 97).cast(pl.String) + pl.lit(".example.com"))
            .alias("customer_email"),
            _cycle(self.EXPIRIES, 3).alias("request_expiry_date"),
            pl.lit(self.notification).alias("notification_type"),
            (pl.lit("Customer ") + pl.col("s")).alias("customer_name"),
            pl.when(phone)
            .then(pl.lit("+25078") + pl.col("s").str.zfill(7))
            .alias("customer_phone"),
            pl.when(pl.col("i") % 5 == 0)
            .then(pl.lit("Subscription, month ") + (pl.col("i") % 12 + 1).cast(pl.String))
            .otherwise(pl.lit("Order ") + pl.col("s") + pl.lit(" for services rendered"))
            .alias("order_description"),
            pl.lit(None, pl.String).alias("payment_account"),
            pl.when(pl.col("i") % 2 == 0)
            .then(pl.lit("PURCHASE"))
            .otherwise(pl.lit("AUTHORIZATION"))
            .alias("link_command"),
            (pl.lit("https://shop.example.com/thanks?order=") + pl.col("s")).alias("return_url"),
        )


def _cycle(choices: tuple[str, ...], stride: int = 1) -> pl.Expr:
    return pl.lit(pl.Series(list(choices))).gather((pl.col("i") * stride) % len(choices))


SHAPES: dict[str, Callable[[int, str, str], Shape]] = {
    "realistic": Realistic,
    "sequential": Sequential,
}


def shape(name: str, seed: int, prefix: str, notification: str) -> Shape:
    return SHAPES[name](seed, prefix, notification)


def _spoil(frame: pl.DataFrame, bad: dict[int, Bad], rows: Shape) -> pl.DataFrame:
    """Overwrite each bad row's one column (and its ``also`` columns) with its bad value."""
    if not bad:
        return frame
    start = int(frame["i"][0])
    patch: dict[str, tuple[list[int], list[str]]] = {}
    copies = iter(rows.references([b.source for b in bad.values() if b.kind.value is None]))
    for i, b in bad.items():
        value = next(copies) if b.kind.value is None else b.kind.value(i)
        for column, text in ((b.kind.column, value), *b.kind.also):
            positions, values = patch.setdefault(column, ([], []))
            positions.append(i - start)
            values.append(text)
    return frame.with_columns(
        frame[column].clone().scatter(positions, values)
        for column, (positions, values) in patch.items()
    )


def write_invoices(
    path: Path,
    rows: int,
    *,
    seed: int = 5,
    prefix: str = "INV",
    notification: str = "NONE",
    shape_name: str = DEFAULT_SHAPE,
    slice_rows: int = SLICE_ROWS,
) -> dict[int, Bad]:
    """Write an invoice CSV of ``rows`` data rows; returns its bad rows by index."""
    bad = bad_rows(rows, seed)
    made = shape(shape_name, seed, prefix, notification)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write((",".join(HEADER) + "\n").encode())
        for start in range(0, rows, slice_rows):
            end = min(start + slice_rows, rows)
            spoiled = {i: b for i, b in bad.items() if start <= i < end}
            frame = _spoil(made.frame(start, end), spoiled, made)
            frame.select(HEADER).write_csv(fh, include_header=False)
    tmp.replace(path)
    return bad


def invoice_texts(
    files: int,
    rows: int,
    *,
    seed: int,
    prefix: str,
    notification: str = "NONE",
    shape_name: str = DEFAULT_SHAPE,
) -> list[str]:
    """``files`` small invoice files of ``rows`` rows as text (the latency and many-files cases).

    Cut from one generated frame, so their references are distinct across all of them
    (and it is one polars evaluation, not one per file). Each file has its own bad rows.
    """
    made = shape(shape_name, seed, prefix, notification)
    frame = made.frame(0, files * rows)
    texts = []
    for n in range(files):
        base = n * rows
        bad = {base + i: Bad(b.kind, base + b.source) for i, b in bad_rows(rows, seed + n).items()}
        part = _spoil(frame.slice(base, rows), bad, made)
        texts.append(",".join(HEADER) + "\n" + part.select(HEADER).write_csv(include_header=False))
    return texts


def invoices_text(
    rows: int,
    *,
    seed: int,
    prefix: str,
    notification: str = "NONE",
    shape_name: str = DEFAULT_SHAPE,
) -> str:
    """One small invoice file as text."""
    return invoice_texts(
        1, rows, seed=seed, prefix=prefix, notification=notification, shape_name=shape_name
    )[0]
