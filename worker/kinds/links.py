"""Payment links: the configured base, then the invoice's unguessable token."""

from __future__ import annotations

import polars as pl


def link_prefix(base: str) -> str:
    """What every payment link starts with: ``payment_link_base`` ending in one ``/``."""
    return base.rstrip("/") + "/"


def link(base: str, token: str) -> str:
    return link_prefix(base) + token


def link_expr(base: str, token: pl.Expr | None = None) -> pl.Expr:
    """The payment link of each row, from its ``token`` column."""
    return pl.lit(link_prefix(base)) + (pl.col("token") if token is None else token)
