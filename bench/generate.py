"""Seeded invoice files for the benchmark: valid rows plus about 1% bad rows of varied kinds.

Every value is a function of the row's index and the seed, built as polars
expressions (10M rows are written in 1M-row slices, so memory stays flat).
Which rows are bad, and how, is drawn by ``random.Random(seed)``: the same
seed gives the same bytes. Expiry dates are fixed far in the future so a file
generated today still validates in years.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rules.invoices import COLUMN_NAMES

HEADER = COLUMN_NAMES
BAD_SHARE = 0.01
SLICE_ROWS = 1_000_000
CURRENCIES = ("USD", "RWF", "JOD", "EUR", "KES")
LANGUAGES = ("en", "ar", "fr", "rw")
EXPIRIES = (
    "2099-12-31T23:59:00+00:00",
    "2098-06-30T12:00:00+02:00",
    "2097-01-15T08:30:00Z",
    "2099-03-01T00:00:00.250-05:00",
)


@dataclass(frozen=True)
class BadKind:
    """One way a row goes wrong: the column it is reported on, the code it must get, and
    the values that break it (usually of that column alone)."""

    name: str
    column: str
    code: str
    #: The bad value for the row at index ``i`` of a file whose references start ``prefix``.
    value: Callable[[int, str], str]
    #: Other columns the row needs changed for the fault to show.
    also: tuple[tuple[str, str], ...] = ()

    @property
    def error(self) -> str:
        return f"{self.code}({self.column})"


def reference(prefix: str, i: int) -> str:
    return f"{prefix}-{i:09d}"


BAD_KINDS: tuple[BadKind, ...] = (
    BadKind("decimal amount", "amount", "INVALID_AMOUNT", lambda i, p: f"{i % 900 + 100}.50"),
    BadKind("zero amount", "amount", "INVALID_AMOUNT", lambda i, p: "0"),
    BadKind("unknown currency", "currency", "INVALID_CURRENCY", lambda i, p: "US$"),
    BadKind("bad email", "customer_email", "INVALID_EMAIL", lambda i, p: f"c{i}@@example.com"),
    BadKind(
        "past expiry",
        "request_expiry_date",
        "EXPIRY_IN_PAST",
        lambda i, p: "2020-01-01T00:00:00+00:00",
    ),
    BadKind("bad date", "request_expiry_date", "INVALID_DATE", lambda i, p: "31/12/2099"),
    BadKind("bad language", "language", "INVALID_VALUE", lambda i, p: "de"),
    # Row 0 is never bad, so its reference is always a valid earlier occurrence.
    BadKind(
        "duplicate reference",
        "merchant_reference",
        "DUPLICATE_MERCHANT_REFERENCE",
        lambda i, p: reference(p, 0),
    ),
    BadKind("bad reference", "merchant_reference", "INVALID_FORMAT", lambda i, p: f"#ref {i}"),
    BadKind("no service command", "service_command", "REQUIRED", lambda i, p: ""),
    BadKind("bad phone", "customer_phone", "INVALID_FORMAT", lambda i, p: "call me"),
    BadKind(
        "SMS without phone",
        "customer_phone",
        "PHONE_REQUIRED_FOR_SMS",
        lambda i, p: "",
        also=(("notification_type", "SMS"),),
    ),
    BadKind("long name", "customer_name", "TOO_LONG", lambda i, p: "N" * 41),
    BadKind("bad url", "return_url", "INVALID_FORMAT", lambda i, p: f"ftp://files{i}"),
)


def bad_rows(rows: int, seed: int) -> dict[int, BadKind]:
    """Which rows are bad, and how: about ``BAD_SHARE`` of them, never row 0."""
    rng = random.Random(seed)
    count = round((rows - 1) * BAD_SHARE) if rows > 1 else 0
    picked = sorted(rng.sample(range(1, rows), count)) if count else []
    return {i: rng.choice(BAD_KINDS) for i in picked}


def _good(start: int, end: int, prefix: str, notification: str) -> pl.DataFrame:
    """Valid rows ``start``..``end`` (global indices), every value derived from the index."""
    i = pl.int_range(start, end, dtype=pl.Int64, eager=True).alias("i")
    s = i.cast(pl.String)
    frame = pl.DataFrame({"i": i, "s": s})
    phone = (pl.col("i") % 3) != 0
    return frame.select(
        pl.col("i"),
        pl.lit("PAYMENT_LINK").alias("service_command"),
        (pl.lit(prefix + "-") + pl.col("s").str.zfill(9)).alias("merchant_reference"),
        ((pl.col("i") * 7919) % 9_999_900 + 100).cast(pl.String).alias("amount"),
        _cycle(CURRENCIES).alias("currency"),
        _cycle(LANGUAGES, 7).alias("language"),
        (pl.lit("customer") + pl.col("s") + pl.lit("@mail") + (pl.col("i") % 97).cast(pl.String))
        .add(pl.lit(".example.com"))
        .alias("customer_email"),
        _cycle(EXPIRIES, 3).alias("request_expiry_date"),
        pl.lit(notification).alias("notification_type"),
        (pl.lit("Customer ") + pl.col("s")).alias("customer_name"),
        pl.when(phone).then(pl.lit("+25078") + pl.col("s").str.zfill(7)).alias("customer_phone"),
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


def _spoil(frame: pl.DataFrame, bad: dict[int, BadKind], prefix: str) -> pl.DataFrame:
    """Overwrite each bad row's one column with its bad value."""
    if not bad:
        return frame
    patch: dict[str, list[str | None]] = {c: [None] * len(bad) for c in HEADER}
    index = list(bad)
    for n, (i, kind) in enumerate(bad.items()):
        patch[kind.column][n] = kind.value(i, prefix)
        for column, value in kind.also:
            patch[column][n] = value
    overrides = pl.DataFrame(
        {"i": index, **patch}, schema={"i": pl.Int64, **dict.fromkeys(HEADER, pl.String)}
    )
    return frame.update(overrides, on="i", how="left")


def write_invoices(
    path: Path,
    rows: int,
    *,
    seed: int = 5,
    prefix: str = "INV",
    notification: str = "NONE",
) -> dict[int, BadKind]:
    """Write an invoice CSV of ``rows`` data rows; returns its bad rows by index."""
    bad = bad_rows(rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write((",".join(HEADER) + "\n").encode())
        for start in range(0, rows, SLICE_ROWS):
            end = min(start + SLICE_ROWS, rows)
            frame = _good(start, end, prefix, notification)
            spoiled = {i: k for i, k in bad.items() if start <= i < end}
            frame = _spoil(frame, spoiled, prefix)
            frame.select(HEADER).write_csv(fh, include_header=False)
    tmp.replace(path)
    return bad


def invoices_text(rows: int, *, seed: int, prefix: str, notification: str = "NONE") -> str:
    """A small invoice file as text (the latency and many-files cases)."""
    frame = _spoil(_good(0, rows, prefix, notification), bad_rows(rows, seed), prefix)
    return ",".join(HEADER) + "\n" + frame.select(HEADER).write_csv(include_header=False)
