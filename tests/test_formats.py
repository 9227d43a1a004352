"""Amounts, dates and pacing: what a reader sees, and how fast it is sent."""

from __future__ import annotations

import pytest

from notifications.formats import money, when
from notifications.pacing import Pacer


@pytest.mark.parametrize(
    ("minor", "currency", "language", "expected"),
    [
        (2000, "RWF", "en", "RWF\xa02,000"),
        (1000, "USD", "en", "$10.00"),
        (100000, "JOD", "en", "JOD\xa0100.000"),
        (1000, "USD", "fr", "10,00\xa0$US"),
        (2000, "RWF", "fr", "2\u202f000\xa0RWF"),
        (2000, "RWF", "rw", "RF\xa02.000"),
        (100000, "JOD", "rw", "JOD\xa0100,000"),
        (1000, "USD", "ar", "\u200f10.00\xa0US$"),
        (123456789, "EUR", "en", "€1,234,567.89"),
        (5, "KWD", "en", "KWD\xa00.005"),
        (1000, "USD", "xx", "$10.00"),
    ],
)
def test_minor_units_become_the_amount_a_reader_of_the_language_expects(
    minor, currency, language, expected
):
    assert money(minor, currency, language) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "May 1, 2030, 2:30\u202fPM UTC"),
        ("fr", "1 mai 2030, 14:30 UTC"),
        ("rw", "2030 Gicurasi 1 14:30 UTC"),
        ("ar", "1 مايو 2030، 2:30 م UTC"),
    ],
)
def test_expiry_is_written_in_the_language_and_says_utc(language, expected):
    assert when("2030-05-01T14:30:00.000000Z", language) == expected


class Clock:
    """A clock the pacer reads and sleeps on, so the test measures and never waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_spaces_sends_evenly_and_an_idle_pause_earns_no_burst():
    clock = Clock()
    pacer = Pacer(50, clock=clock.time, sleep=clock.sleep)
    for _ in range(101):
        pacer.wait()
    assert clock.now == pytest.approx(100.0 + 100 / 50)
    clock.now += 60  # idle for a minute
    start = clock.now
    for _ in range(11):
        pacer.wait()
    assert clock.now - start == pytest.approx(10 / 50)


def test_a_rate_of_zero_means_unpaced():
    clock = Clock()
    pacer = Pacer(0, clock=clock.time, sleep=clock.sleep)
    for _ in range(1000):
        pacer.wait()
    assert clock.slept == []
