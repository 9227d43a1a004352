"""Cases with ``invoice-worker run`` already going: small files dropped one at a time
(latency) or all at once (a burst), the way an ERP drops them.

Latency is timed from the moment the file is complete in the inbox, however it
arrived: the rename into the inbox (``rename``), or the writer's ``close`` of a
file written in place under its final name (``in place``), to the moment its
results file exists in ``outbox/``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import generate, measure
from bench.cases import SETTLE_SECONDS, discard, fresh_home, product_command, product_env

START_TIMEOUT = 30.0
#: The ways a file arrives that the latency case times.
ARRIVALS = ("rename", "in place")


class Service:
    """``invoice-worker run`` in the background, with its peak memory sampled."""

    def __init__(
        self, home: Path, settle: float | None = SETTLE_SECONDS, env: dict[str, str] | None = None
    ) -> None:
        """``env``: the whole environment, instead of :func:`product_env` of ``home``."""
        self.home = home
        #: Peak RSS of the process tree, known after :meth:`stop`.
        self.peak = 0
        self.log = open(home / "worker.log", "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            product_command("run"),
            env=env or product_env(home, settle),
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.sampler = measure.TreeSampler(self.proc.pid).__enter__()
        deadline = time.monotonic() + START_TIMEOUT
        while "watcher.started" not in (home / "worker.log").read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"run did not start:\n{(home / 'worker.log').read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sampler.__exit__()
        self.peak = self.sampler.peak
        self.log.close()

    def final_files(self) -> int:
        """Files in a final state, read from the state database as ``status`` does."""
        db = self.home / "var" / "state.db"
        if not db.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            try:
                row = conn.execute(
                    "SELECT count(*) FROM files WHERE state IN ('processed', 'rejected', 'failed')"
                ).fetchone()
            except sqlite3.OperationalError:
                return 0
        return int(row[0])


@contextlib.contextmanager
def service(scratch: Path, name: str, settle: float | None = SETTLE_SECONDS) -> Iterator[Service]:
    home = fresh_home(scratch, name)
    svc = Service(home, settle)
    try:
        yield svc
    finally:
        svc.stop()
    discard(home)


def drop_text(inbox: Path, name: str, text: str) -> float:
    """Write-then-rename, as ERPs are told to; returns the time of the rename."""
    tmp = inbox / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, inbox / name)
    return time.perf_counter()


def write_in_place(inbox: Path, name: str, text: str) -> float:
    """open, write, close under the final name (an ERP export); returns the time of the close."""
    fh = open(inbox / name, "w")  # noqa: SIM115 - the close is what is timed
    fh.write(text)
    fh.close()
    return time.perf_counter()


def wait_for(path: Path, timeout: float = 30.0, poll: float = 0.002) -> float:
    """The time at which ``path`` exists."""
    deadline = time.perf_counter() + timeout
    while not path.exists():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{path.name} did not appear in {timeout}s")
        time.sleep(poll)
    return time.perf_counter()


@dataclass
class Latency:
    samples: list[float]
    peak_rss: int

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.samples, n=20, method="inclusive")[18]


def latency(
    scratch: Path,
    drops: int = 50,
    rows: int = 10,
    *,
    arrival: str = "rename",
    settle: float | None = SETTLE_SECONDS,
) -> Latency:
    """Time from complete-in-the-inbox to results of small files, one at a time, ``run`` going.

    ``settle`` None runs the product with its default ``settle_seconds``.
    """
    put = {"rename": drop_text, "in place": write_in_place}[arrival]
    tag = arrival.replace(" ", "-")
    texts = generate.invoice_texts(drops + 1, rows, seed=17, prefix=f"LAT-{tag}")
    samples: list[float] = []
    with service(scratch, f"latency-{tag}", settle) as svc:
        inbox, outbox = svc.home / "inbox", svc.home / "outbox"
        # One drop first, untimed: the first file also pays for lazy imports.
        for n, text in enumerate(texts):
            name = f"drop-{n:03d}.csv"
            start = put(inbox, name, text)
            end = wait_for(outbox / f"{name}.results.csv")
            if n:
                samples.append(end - start)
            time.sleep(0.05)
    return Latency(samples, svc.peak)


def stage_burst(inbox: Path, files: int, rows: int = 10) -> list[Path]:
    """The burst's files written under temp names in ``inbox`` (untimed), in order."""
    staged = []
    for n, text in enumerate(generate.invoice_texts(files, rows, seed=23, prefix="MANY")):
        tmp = inbox / f".many-{n:04d}.csv.tmp"
        tmp.write_text(text)
        staged.append(tmp)
    return staged


def release(staged: list[Path]) -> float:
    """Rename every staged file to its final name, at once; returns the time before."""
    start = time.perf_counter()
    for tmp in staged:
        os.rename(tmp, tmp.with_name(tmp.name[1:-4]))
    return start


@dataclass
class Burst:
    files: int
    wall: float
    peak_rss: int


def burst(scratch: Path, files: int = 1000, rows: int = 10, timeout: float = 300) -> Burst:
    """``files`` small files renamed into the inbox at once; time until every result is out."""
    with service(scratch, "burst") as svc:
        staged = stage_burst(svc.home / "inbox", files, rows)
        start = release(staged)
        while svc.final_files() < files:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"not all {files} files were processed in {timeout}s")
            time.sleep(0.02)
        wall = time.perf_counter() - start
    return Burst(files, wall, svc.peak)
