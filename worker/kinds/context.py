"""The rules' context for a file, from the configuration as it is now."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from rules import values
from rules.columns import Context
from worker.settings import Settings


def rules_context(
    settings_currencies: tuple[str, ...],
    accounts: Mapping[str, str],
    default_account: str | None,
) -> Context:
    known = values.currencies()
    allowed = (
        frozenset(c.upper() for c in settings_currencies) & known if settings_currencies else known
    )
    return Context(
        # Whole seconds: files validated within one second share one set of compiled
        # rule expressions (see validation.expressions); the clock is read per file.
        now=datetime.now(UTC).replace(microsecond=0),
        currencies=allowed,
        accounts=dict(accounts),
        default_account=default_account,
    )


def for_settings(settings: Settings) -> Context:
    return rules_context(settings.currencies, dict(settings.accounts), settings.default_account)
