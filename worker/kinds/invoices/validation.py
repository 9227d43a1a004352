"""Invoice file validation: the column rules over each chunk, vectorised in polars.

A validated chunk is written to ``var/work/<file id>/chunk-NNNNN.arrow`` with
every row's errors and, for valid rows, the normalised invoice fields, the
row's ordinal among valid rows (its invoice number is the file's reserved base
plus that ordinal) and its payment-link token. A row whose reference names an invoice
with the same content (SPEC 13) is neither valid nor rejected: it keeps that invoice's
number and link (``existing``, ``existing_link``) and no ordinal. Processing and the
results file read these chunks, so a restart never re-draws a token or a number.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rules import values
from rules.columns import Context
from rules.invoices import COLUMN_NAMES, normalised
from rules.invoices import invoice_errors as errors_expr
from worker.intake.readers import Table
from worker.kinds.invoices.existing import ExistsCheck, against
from worker.kinds.invoices.seen import SeenReferences
from worker.pipeline import chunks, frames
from worker.pipeline.kind import Summary

TOKEN_BYTES = 16  # 128 bits from the OS's CSPRNG

#: What a chunk file holds, in order.
CHUNK_COLUMNS = (
    "line_number",
    "errors",
    "valid",
    "ordinal",
    "merchant_reference",
    "amount_text",
    "currency_text",
    "amount",
    "currency",
    "language",
    "customer_email",
    "customer_name",
    "customer_phone",
    "notification_type",
    "expires_at",
    "order_description",
    "payment_account",
    "link_command",
    "return_url",
    "token",
    "existing",
    "existing_link",
)


def tokens(count: int) -> pl.Series:
    """``count`` hex tokens of 128 random bits, drawn in one call."""
    # Imported here: the processes that never validate (``run`` itself) save 27 MB.
    import pyarrow as pa

    raw = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(TOKEN_BYTES),
        count,
        [None, pa.py_buffer(secrets.token_bytes(TOKEN_BYTES * count))],
    )
    return pl.Series("token", raw).cast(pl.Binary).bin.encode("hex")


def _normalised(ctx: Context) -> list[pl.Expr]:
    return [
        pl.col("amount").alias("amount_text"),
        pl.col("currency").alias("currency_text"),
        *(expr.alias(name) for name, expr in normalised(ctx).items()),
    ]


_EXPRESSIONS: dict[tuple[object, ...], tuple[pl.Expr, list[pl.Expr]]] = {}
_EXPRESSIONS_KEPT = 8


def expressions(ctx: Context) -> tuple[pl.Expr, list[pl.Expr]]:
    """The error and normalisation expressions for ``ctx``, built once per distinct context:
    building them costs a few milliseconds, as much as validating a small file."""
    key = (
        ctx.now,
        ctx.currencies,
        tuple(sorted(ctx.accounts.items())),
        ctx.default_account,
    )
    built = _EXPRESSIONS.get(key)
    if built is None:
        built = _EXPRESSIONS[key] = (errors_expr(ctx), _normalised(ctx))
        while len(_EXPRESSIONS) > _EXPRESSIONS_KEPT:
            _EXPRESSIONS.pop(next(iter(_EXPRESSIONS)), None)
    return built


#: A row with an error, once the rules have run.
REJECTED = pl.col("errors") != ""
#: A row naming an invoice with the same content: nothing to create (SPEC 13).
EXISTS = pl.col("existing").is_not_null()
#: A row with no error that names no invoice: one to create.
VALID = ~REJECTED & ~EXISTS
#: Chunks of this many rows or more are validated by polars' streaming engine.
STREAMING_FROM_ROWS = 10_000
#: Chunks under this many rows are validated without optimising the query plan.
UNOPTIMISED_BELOW_ROWS = 500
#: Rows read and validated at a time; a chunk of ``chunk_rows`` is put together from
#: them. The reader's and the streaming engine's memory grow with the batch: on a 1M-row
#: file validation peaked at 660 MB reading 100,000 rows at a time, 390 MB at 25,000,
#: in the same time.
READ_ROWS = 25_000
#: ``invoice-worker validate`` keeps nothing of a read but its errors (no chunk files,
#: no pipeline beside it), so it reads twice as many rows at a time: 6-10 % faster on
#: 1M rows, for about 100 MB more at its peak.
CHECK_READ_ROWS = 50_000


class InvoiceValidator:
    """Validates one file chunk by chunk, remembering references across chunks."""

    def __init__(
        self,
        ctx: Context,
        exists: ExistsCheck | None = None,
        *,
        errors_only: bool = False,
        folder: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self.exists = exists
        #: Only ``line_number``, ``merchant_reference``, ``errors`` and ``valid``: what
        #: ``invoice-worker validate`` reports, without what processing would need.
        self.errors_only = errors_only
        #: ``folder``: where the earlier references' second hashes are kept meanwhile.
        self.seen = SeenReferences(folder)
        self.summary = Summary()
        self._errors, self._normal = expressions(ctx)

    def chunk(self, raw: pl.DataFrame, *, whole: bool = True) -> pl.DataFrame:
        """``raw`` validated, and counted in ``self.summary``; ``whole``: as a chunk of
        its own (else a part of one, counted by the caller once it is complete)."""
        frame = frames.prepare(raw, COLUMN_NAMES)
        refs = frame["merchant_reference"]
        seen_in_file = ~refs.is_first_distinct() | self.seen.met(refs)
        ordinal = VALID.cast(pl.Int64).cum_sum() - 1 + self.summary.valid
        checked = self.check(frame, seen_in_file, ordinal)
        self.summary.count(checked, REJECTED, exists_when=EXISTS, chunks=int(whole))
        return checked

    def check(
        self,
        frame: pl.DataFrame,
        seen_in_file: pl.Series,
        ordinal: pl.Expr,
        keep: tuple[str, ...] = (),
    ) -> pl.DataFrame:
        """The rules over a prepared frame: ``seen_in_file`` marks references met earlier,
        ``ordinal`` numbers the valid rows; ``keep`` columns pass through, last."""
        refs = frame["merchant_reference"]
        stored = self.exists(refs) if self.exists else None
        valid = VALID
        # One lazy query, not eager steps: the optimiser then evaluates each shared
        # subexpression once (the expiry date is parsed by two rules and normalised,
        # the notification list is split by three), about 40% of validation time.
        query = frame.lazy().with_columns(
            _seen_in_file=seen_in_file.fill_null(False),
            _email_ok=values.email_ok(frame["customer_email"]),
        )
        query = against(query, stored, self.ctx)
        # A row the same as its invoice has no errors: nothing is made from it, so what
        # has changed since (an expiry passed) does not count. Cleared once the errors
        # are a column: wrapping the rules' expression costs a third of validation.
        can_exist = stored is not None and not stored.is_empty()
        cleared = pl.when(EXISTS).then(pl.lit("")).otherwise(pl.col("errors")).alias("errors")
        errors = self._errors.alias("errors")
        if self.errors_only:
            query = query.select("line_number", "merchant_reference", errors, "existing", *keep)
            if can_exist:
                query = query.with_columns(cleared)
            query = query.with_columns(valid=valid)
        else:
            query = query.select(
                "line_number", errors, *self._normal, "existing", "existing_link", *keep
            )
            if can_exist:
                query = query.with_columns(cleared)
            query = query.with_columns(
                valid=valid,
                ordinal=pl.when(valid).then(ordinal),
                token=pl.when(valid).then(pl.lit(tokens(len(frame)))),
            ).select(*CHUNK_COLUMNS, *keep)
        # For a small chunk the streaming engine's start-up costs more than the query
        # (0.7 ms of 2.7 for 10 rows); for a large one it is the faster engine. Below a
        # few hundred rows, optimising the plan costs more than it saves (0.5 ms of 2).
        if len(frame) < UNOPTIMISED_BELOW_ROWS:
            return query.collect(engine="in-memory", optimizations=pl.QueryOptFlags.none())
        if len(frame) < STREAMING_FROM_ROWS:
            return query.collect(engine="in-memory")
        return query.collect(engine="streaming")

    def run(
        self, table: Table, chunk_rows: int, read_rows: int = READ_ROWS
    ) -> Iterator[tuple[int, pl.DataFrame]]:
        """A whole table validated, in parts of at most ``read_rows`` rows, each with
        the index of its chunk: chunk ``i`` holds rows ``i * chunk_rows`` onwards, as it
        would read whole. ``self.summary`` holds the totals after."""
        self.summary.unknown_columns = frames.unknown_columns(table, COLUMN_NAMES)
        index, rows = 0, 0
        for raw in table.batches(min(chunk_rows, read_rows)):
            checked = self.chunk(raw, whole=False)
            if not self.summary.chunks:
                self.summary.chunks = 1
            while len(checked) > chunk_rows - rows:
                take = chunk_rows - rows
                if take:
                    yield index, checked.head(take)
                    checked = checked.slice(take)
                index, rows = index + 1, 0
                self.summary.chunks += 1
            # An empty file still gives its one (empty) chunk.
            if len(checked) or not rows:
                yield index, checked
            rows += len(checked)


def validate_to(
    table: Table, ctx: Context, folder: Path, chunk_rows: int, exists: ExistsCheck | None
) -> Summary:
    """Validate ``table`` into chunk files under ``folder`` (replacing any earlier try)."""
    chunks.clear(folder)
    validator = InvoiceValidator(ctx, exists, folder=folder)
    writer: chunks.Writer | None = None
    try:
        for index, part in validator.run(table, chunk_rows):
            if writer is None or writer.index != index:
                if writer is not None:
                    writer.close()
                writer = chunks.Writer(folder, index)
            writer.add(part)
        if writer is not None:
            writer.close()
    finally:
        validator.seen.close()
    return validator.summary


@dataclass(frozen=True)
class Small:
    """A file of one chunk, read, to be validated with others."""

    table: Table
    raw: pl.DataFrame
    folder: Path


def validate_many(files: list[Small], ctx: Context, exists: ExistsCheck | None) -> list[Summary]:
    """Several one-chunk files validated in one query, each left with the chunk file and
    the summary ``validate_to`` would give it: for a 10-row file the query's fixed cost
    is most of the work, and a burst of small files pays it once per group."""
    frame = frames.prepare(
        pl.concat(
            [f.raw.with_columns(_file=pl.lit(i, pl.UInt32)) for i, f in enumerate(files)],
            how="diagonal",
        ),
        COLUMN_NAMES,
        keep=("_file",),
    )
    seen_in_file = frame.select(
        (~pl.col("merchant_reference").is_first_distinct()).over("_file")
    ).to_series()
    ordinal = (VALID.cast(pl.Int64).cum_sum() - 1).over("_file")
    checked = InvoiceValidator(ctx, exists).check(frame, seen_in_file, ordinal, keep=("_file",))
    parts = checked.partition_by("_file", as_dict=True, include_key=False)
    empty = checked.clear().drop("_file")
    summaries = []
    for i, f in enumerate(files):
        chunks.clear(f.folder)
        chunk = parts.get((i,), empty)
        summary = Summary(unknown_columns=frames.unknown_columns(f.table, COLUMN_NAMES))
        summary.count(chunk, REJECTED, exists_when=EXISTS)
        chunks.write(f.folder, 0, chunk)
        summaries.append(summary)
    return summaries
