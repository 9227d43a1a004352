"""The watcher does not lean on watchdog alone right after a claim: see EVENT_HOLD_SECONDS."""

from __future__ import annotations

from helpers import drop, invoice_csv, invoice_row

from worker.intake.watcher import Watcher
from worker.settings import Settings
from worker.state import Store


def test_a_file_dropped_just_after_a_claim_is_noticed_without_an_event(
    settings: Settings, store: Store
) -> None:
    # Given a watcher with no observer running (no events at all) and a long scan interval
    watcher = Watcher(settings.with_(scan_seconds=3600, settle_seconds=0), store, lambda ids: None)
    drop(settings, "first.csv", invoice_csv([invoice_row(1)]))
    watcher.scan()
    # When it claims that file, and a second one arrives
    assert len(watcher.tick()) == 1
    drop(settings, "second.csv", invoice_csv([invoice_row(2)]))
    watcher.step()
    # Then the listing that follows a claim found it, and (settle time 0) it is claimed
    assert store.one("SELECT 1 FROM files WHERE name = 'second.csv'") is not None


def test_a_file_is_timed_from_the_event_that_named_it(settings: Settings, store: Store) -> None:
    # Given a file already complete when its event arrives
    watcher = Watcher(settings.with_(settle_seconds=0), store, lambda ids: None)
    path = drop(settings, "whole.csv", invoice_csv([invoice_row(1)]))
    # When the event is noticed, the very next tick may claim it (settle time 0)
    watcher.notice(str(path))
    assert len(watcher.tick()) == 1
