"""Kicks: a burst of "deliver now" asks from one process becomes a few messages."""

from __future__ import annotations

import time
from typing import Any

import dramatiq

from worker.service import broker as broker_module
from worker.service.actors import Kick


def test_a_burst_of_kicks_sends_a_few_messages_and_the_last_run_follows_the_last_kick(
    broker: Any,
) -> None:
    runs: list[float] = []

    @dramatiq.actor(queue_name="kick-test", max_retries=0)
    def counted() -> None:
        runs.append(time.monotonic())

    worker = broker_module.worker(broker, 1)
    worker.start()
    try:
        # Given a kick with a 0.2 s window
        kick = Kick(counted, window=0.2)
        # When it is asked for 40 times over about half a second
        started = time.monotonic()
        for _ in range(40):
            kick()
            last = time.monotonic()
            time.sleep(0.01)
        elapsed = last - started
        deadline = time.monotonic() + 10
        while not (runs and runs[-1] >= last) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    # Then the actor ran once a window, not once a kick
    assert 2 <= len(runs) <= elapsed / 0.2 + 2
    # And a run started after the last kick, so it saw what that kick was for
    assert runs[-1] >= last
