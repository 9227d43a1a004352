"""The product, run the way users run it: ``invoice-worker`` processes on fresh home folders.

Every case makes its own home under the benchmark's scratch folder, puts the
input there by hard link (an instant "drop" that leaves the generated file in
place), and times whole processes with :mod:`bench.measure`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import generate, measure

SETTLE_SECONDS = 0.25
START_TIMEOUT = 30.0


def product_command(*args: str) -> list[str]:
    """``invoice-worker ARGS``: the console script beside this interpreter."""
    script = Path(sys.executable).with_name("invoice-worker")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "worker.cli", *args]


def product_env(home: Path, **settings: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("INVOICE_WORKER_", "REDIS_URL"))
    }
    env["INVOICE_WORKER_HOME"] = str(home)
    env["INVOICE_WORKER_SETTLE_SECONDS"] = str(SETTLE_SECONDS)
    env.update({f"INVOICE_WORKER_{k.upper()}": v for k, v in settings.items()})
    return env


def fresh_home(scratch: Path, name: str) -> Path:
    home = scratch / name
    shutil.rmtree(home, ignore_errors=True)
    for folder in ("inbox", "outbox"):
        (home / folder).mkdir(parents=True)
    return home


def place(source: Path, inbox: Path) -> Path:
    """Put ``source`` into ``inbox`` at once: a hard link (a copy across filesystems)."""
    target = inbox / source.name
    try:
        os.link(source, target)
    except OSError:
        tmp = inbox / f".{source.name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.rename(target)
    return target


@dataclass
class OnceResult:
    run: measure.Run
    #: Seconds from start to the results file.
    results_at: float | None
    customer_emails: int
    admin_emails: int


def run_once(
    scratch: Path, name: str, source: Path, timeout: float = 3600, linger: float | None = None
) -> OnceResult:
    """``invoice-worker run --once`` on a home whose inbox holds ``source``.

    ``linger``: stop it (SIGTERM) that many seconds after the results file, for files
    whose customer emails, paced, would keep it going for hours.
    """
    home = fresh_home(scratch, name)
    place(source, home / "inbox")
    results = home / "outbox" / f"{source.name}.results.csv"
    done = measure.run(
        product_command("run", "--once"),
        env=product_env(home),
        cwd=home,
        timeout=timeout,
        mark=results.exists,
        linger=linger,
    )
    if (done.returncode != 0 and not done.stopped) or not results.exists():
        raise RuntimeError(f"{name}: run --once failed ({done.returncode}):\n{done.stderr[-3000:]}")
    mails = [p.name for p in (home / "mail").glob("*.eml")]
    admin = sum(1 for m in mails if m.split("-", 1)[-1].startswith("file-"))
    result = OnceResult(done, done.marked_at, len(mails) - admin, admin)
    shutil.rmtree(home, ignore_errors=True)
    return result


def validate(scratch: Path, source: Path) -> measure.Run:
    """``invoice-worker validate FILE`` (exit 1: the file has bad rows, as it should)."""
    home = fresh_home(scratch, "validate")
    done = measure.run(
        product_command("validate", "--limit", "0", str(source)),
        env=product_env(home),
        cwd=home,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"validate failed ({done.returncode}):\n{done.stderr[-3000:]}")
    shutil.rmtree(home, ignore_errors=True)
    return done


class Service:
    """``invoice-worker run`` in the background, with its peak memory sampled."""

    def __init__(self, home: Path) -> None:
        self.home = home
        #: Peak RSS of the process tree, known after :meth:`stop`.
        self.peak = 0
        self.log = open(home / "worker.log", "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            product_command("run"),
            env=product_env(home),
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
def service(scratch: Path, name: str) -> Iterator[Service]:
    home = fresh_home(scratch, name)
    svc = Service(home)
    try:
        yield svc
    finally:
        svc.stop()
    shutil.rmtree(home, ignore_errors=True)


def drop_text(inbox: Path, name: str, text: str) -> float:
    """Write-then-rename, as ERPs are told to; returns the time of the rename."""
    tmp = inbox / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, inbox / name)
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


def latency(scratch: Path, drops: int = 50, rows: int = 10) -> Latency:
    """Drop-to-results time of small files, one at a time, with ``run`` already going."""
    samples: list[float] = []
    with service(scratch, "latency") as svc:
        inbox, outbox = svc.home / "inbox", svc.home / "outbox"
        # One drop first, untimed: the first file also pays for lazy imports.
        for n in range(drops + 1):
            name = f"drop-{n:03d}.csv"
            text = generate.invoices_text(rows, seed=n, prefix=f"LAT{n:03d}")
            start = drop_text(inbox, name, text)
            end = wait_for(outbox / f"{name}.results.csv")
            if n:
                samples.append(end - start)
            time.sleep(0.05)
    return Latency(samples, svc.peak)


@dataclass
class Burst:
    files: int
    wall: float
    peak_rss: int


def burst(scratch: Path, files: int = 1000, rows: int = 10, timeout: float = 300) -> Burst:
    """``files`` small files renamed into the inbox at once; time until every result is out."""
    with service(scratch, "burst") as svc:
        inbox = svc.home / "inbox"
        staged = []
        for n in range(files):
            tmp = inbox / f".many-{n:04d}.csv.tmp"
            tmp.write_text(generate.invoices_text(rows, seed=n, prefix=f"MANY{n:04d}"))
            staged.append(tmp)
        start = time.perf_counter()
        for tmp in staged:
            os.rename(tmp, inbox / tmp.name[1:-4])
        while svc.final_files() < files:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"not all {files} files were processed in {timeout}s")
            time.sleep(0.02)
        wall = time.perf_counter() - start
    return Burst(files, wall, svc.peak)
