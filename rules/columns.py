"""The column machinery every kind's rules are written in: columns, rules, the context.

Each column lists its checks in reporting order. A row gets at most one code
per column: the first that applies of ``REQUIRED``, ``TOO_LONG``, then the
column's own rules. A rule's ``fails`` builds a polars expression that is
true where a row breaks it; it receives the :class:`Context` so that rules
depending on configuration (currencies, accounts, the clock) stay data too.
Expressions see trimmed text columns; blank values are null.

Rules that need state (a reference seen earlier in the file, or already
invoiced) read helper columns the validator adds: ``_seen_in_file`` and
``_exists``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl


@dataclass(frozen=True)
class Context:
    """What rules may depend on besides the row."""

    now: datetime
    currencies: frozenset[str]
    accounts: Mapping[str, str] = field(default_factory=dict)
    default_account: str | None = None


@dataclass(frozen=True)
class Rule:
    code: str
    message: str
    fails: Callable[[Context], pl.Expr]


@dataclass(frozen=True)
class Column:
    name: str
    #: True, False, or a function of the context (``customer_phone`` when SMS is asked).
    required: bool
    max_length: int | None = None
    rules: tuple[Rule, ...] = ()
    example: str = ""
    #: For an optional column: the code and the check that make a blank value an error
    #: (``customer_phone`` when SMS is asked for).
    required_when: tuple[str, Callable[[Context], pl.Expr]] | None = None


def col(name: str) -> pl.Expr:
    return pl.col(name)


def not_matching(name: str, pattern: str) -> Callable[[Context], pl.Expr]:
    return lambda ctx: ~col(name).str.contains(pattern)


def not_in(
    name: str, allowed: tuple[str, ...], *, any_case: bool = False
) -> Callable[[Context], pl.Expr]:
    def fails(ctx: Context) -> pl.Expr:
        value = col(name).str.to_lowercase() if any_case else col(name)
        return ~value.is_in([a.lower() if any_case else a for a in allowed])

    return fails


def column_error(column: Column, ctx: Context) -> pl.Expr:
    """``CODE(column)`` for the first check the row fails on this column, else null."""
    value = col(column.name)
    blank = value.is_null()
    branches: list[tuple[pl.Expr, str]] = []
    if column.required:
        branches.append((blank, "REQUIRED"))
    elif column.required_when is not None:
        code, needed = column.required_when
        branches.append((blank & needed(ctx), code))
    if column.max_length:
        branches.append((value.str.len_chars() > column.max_length, "TOO_LONG"))
    branches.extend((value.is_not_null() & rule.fails(ctx), rule.code) for rule in column.rules)
    # when/then chains are their own polars types until otherwise() makes an Expr.
    expr: Any = None
    for condition, code in branches:
        label = pl.lit(f"{code}({column.name})")
        expr = pl.when(condition).then(label) if expr is None else expr.when(condition).then(label)
    return expr.otherwise(None) if expr is not None else pl.lit(None, pl.String)


def errors_expr(columns: Iterable[Column], ctx: Context) -> pl.Expr:
    """Every column's code joined by ``;`` in column order; empty for a valid row."""
    return pl.concat_str(
        [column_error(c, ctx) for c in columns], separator=";", ignore_nulls=True
    ).fill_null("")
