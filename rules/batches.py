"""IremboPay's batch invoice rules and codes, as data (SPEC 5).

The nine business rules:

1. All invoices of a batch have the same currency.            -> BAD_INVOICES_CURRENCY
2. All invoices of a batch have the same payment account.     -> BAD_INVOICES_PAYMENT_ACCOUNT
3. An expired invoice cannot be included in a batch.          -> BAD_INVOICES_PAYMENT_EXPIRED
4. An invoice can be in one batch only.                       -> BAD_INVOICES_IN_BATCH
5. A paid invoice cannot be included in a batch.              -> BAD_INVOICES_PAID
6. The batch's expiry is the earliest expiry of its invoices. -> ``BATCH_FIELDS["expires_at"]``
7. Once in a batch, an invoice cannot be paid on its own.     -> ``rules.payments`` INVOICE_IN_BATCH
8. A batch invoice cannot be paid partially.                  -> ``rules.payments``
   PARTIAL_PAYMENT_NOT_ALLOWED
9. Paying a batch pays its invoices; the merchant hears of the batch only
   -> ``worker.paying`` (one transaction, one webhook)

And, since cancellation files (SPEC 13): a cancelled invoice cannot be included in a
batch -> BAD_INVOICES_CANCELLED, reported after BAD_INVOICES_PAID.

A request is checked by every rule of :data:`BATCH_RULES`, in the order codes
are reported (SPEC 5's table). A rule looks either at each invoice of the
request (a polars expression over the request's invoices frame, true on the
invoices that break it: those are the numbers the error names) or at the
request as a whole (a small pure function).

The invoices frame has one row per distinct invoice number asked for, in
request order: ``requested`` (the text as given), ``invoice_number`` (Int64,
null when not a number), ``found``, ``type``, ``status``, ``currency``,
``payment_account``, ``expires_at`` (UTC datetime), ``batch_number``,
``amount``, ``language``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

#: The columns (and types) every invoices frame has.
INVOICE_SCHEMA: dict[str, pl.DataType] = {
    "requested": pl.String(),
    "invoice_number": pl.Int64(),
    "found": pl.Boolean(),
    "type": pl.String(),
    "status": pl.String(),
    "currency": pl.String(),
    "payment_account": pl.String(),
    "expires_at": pl.Datetime("us", "UTC"),
    "batch_number": pl.Int64(),
    "amount": pl.Int64(),
    "language": pl.String(),
}


@dataclass(frozen=True)
class Request:
    """One batch request as the file gave it (IremboPay's request body)."""

    transaction_id: str | None
    #: Distinct, non-blank invoice numbers as text, in the order given.
    invoice_numbers: tuple[str, ...]
    description: str | None = None


@dataclass(frozen=True)
class BatchContext:
    """What the rules may depend on besides the request and its invoices."""

    now: datetime
    #: Whether a batch with this transaction id already exists.
    transaction_exists: bool = False
    #: Invoices linked by an earlier, created request of the same file and not yet
    #: in the database (``invoice-worker validate`` simulates a file without writing).
    claimed: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class BatchRule:
    name: str
    code: str
    http_status: int
    message: str
    #: True on each invoice that breaks the rule.
    invoices: Callable[[BatchContext], pl.Expr] | None = None
    #: True when the request as a whole breaks the rule.
    request: Callable[[Request, BatchContext], bool] | None = None


@dataclass(frozen=True)
class Failure:
    """A rule a request breaks, with the invoice numbers (as given) that break it."""

    rule: BatchRule
    invoice_numbers: tuple[str, ...] = ()

    def doc(self) -> dict[str, object]:
        return {
            "code": self.rule.code,
            "message": self.rule.message,
            "invoiceNumbers": list(self.invoice_numbers),
        }


def found() -> pl.Expr:
    return pl.col("found")


def _differs(column: str) -> Callable[[BatchContext], pl.Expr]:
    # The batch's value is its first found invoice's; the invoices that differ caused it.
    def fails(ctx: BatchContext) -> pl.Expr:
        first = pl.col(column).filter(found()).first()
        return found() & pl.col(column).ne_missing(first)

    return fails


def _in_batch(ctx: BatchContext) -> pl.Expr:
    linked = pl.col("batch_number").is_not_null() | (pl.col("type") == "BATCH")
    return found() & (linked | pl.col("invoice_number").is_in(sorted(ctx.claimed)))


BATCH_RULES: tuple[BatchRule, ...] = (
    BatchRule(
        "invoices given",
        "INVOICES_MISSING",
        400,
        "no invoice given",
        request=lambda req, ctx: not req.invoice_numbers,
    ),
    BatchRule(
        "rule 1: one currency",
        "BAD_INVOICES_CURRENCY",
        400,
        "invoices differ in currency",
        invoices=_differs("currency"),
    ),
    BatchRule(
        "rule 2: one payment account",
        "BAD_INVOICES_PAYMENT_ACCOUNT",
        400,
        "invoices differ in payment account",
        invoices=_differs("payment_account"),
    ),
    BatchRule(
        "rule 3: no expired invoice",
        "BAD_INVOICES_PAYMENT_EXPIRED",
        400,
        "an invoice is expired",
        invoices=lambda ctx: found() & (pl.col("expires_at") <= pl.lit(ctx.now)).fill_null(False),
    ),
    BatchRule(
        "rule 4: one batch per invoice",
        "BAD_INVOICES_IN_BATCH",
        400,
        "an invoice is already in a batch",
        invoices=_in_batch,
    ),
    BatchRule(
        "rule 5: no paid invoice",
        "BAD_INVOICES_PAID",
        400,
        "an invoice is paid",
        invoices=lambda ctx: found() & (pl.col("status") == "PAID").fill_null(False),
    ),
    BatchRule(
        "no cancelled invoice",
        "BAD_INVOICES_CANCELLED",
        400,
        "an invoice is cancelled",
        invoices=lambda ctx: found() & (pl.col("status") == "CANCELLED").fill_null(False),
    ),
    BatchRule(
        "transaction id given",
        "TRANSACTION_ID_MISSING",
        400,
        "no transaction id",
        request=lambda req, ctx: not req.transaction_id,
    ),
    BatchRule(
        "transaction id unique",
        "DUPLICATE_TRANSACTION_ID",
        400,
        "the transaction id already exists",
        request=lambda req, ctx: bool(req.transaction_id) and ctx.transaction_exists,
    ),
    BatchRule(
        "invoices exist",
        "INVOICE_NOT_FOUND",
        404,
        "an invoice number does not exist",
        invoices=lambda ctx: ~found(),
    ),
)

#: A created batch's own fields, from its invoices (all found, none failing a rule).
BATCH_FIELDS: dict[str, pl.Expr] = {
    "amount": pl.col("amount").sum(),
    "currency": pl.col("currency").first(),
    "payment_account": pl.col("payment_account").first(),
    # Rule 6: the earliest expiry, compared as instants (the column is a UTC datetime).
    "expires_at": pl.col("expires_at").min(),
    "language": pl.col("language").first(),
}


def evaluate(request: Request, invoices: pl.DataFrame, ctx: BatchContext) -> list[Failure]:
    """Every rule the request breaks, in reporting order; empty when it may be created."""
    flags = invoices.select(
        "requested",
        *[r.invoices(ctx).alias(r.code) for r in BATCH_RULES if r.invoices is not None],
    )
    failures = []
    for rule in BATCH_RULES:
        if rule.request is not None:
            if rule.request(request, ctx):
                failures.append(Failure(rule))
            continue
        numbers = flags.filter(pl.col(rule.code))["requested"].to_list()
        if numbers:
            failures.append(Failure(rule, tuple(numbers)))
    return failures


def http_status(failures: list[Failure]) -> int:
    """201 when created; else the status of the first error reported (400 before 404)."""
    return failures[0].rule.http_status if failures else 201
