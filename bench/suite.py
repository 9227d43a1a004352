"""What ``make bench`` runs: inputs, floors, product cases, and the targets they are held to."""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bench import cases, generate, measure

GENERATOR_VERSION = 1
SIZES = (10_000, 100_000, 1_000_000)
BIG = 10_000_000
GIB = 1 << 30
#: How long ``run --once`` may go on sending customer emails after the results file.
EMAIL_LINGER_SECONDS = 30.0


@dataclass
class Row:
    """One line of the table."""

    case: str
    rows: int | None
    wall: float | None
    peak_rss: int | None = None
    floor: float | None = None
    note: str = ""

    @property
    def rate(self) -> float | None:
        return self.rows / self.wall if self.rows and self.wall else None

    @property
    def ratio(self) -> float | None:
        return self.wall / self.floor if self.wall and self.floor else None


@dataclass
class Target:
    name: str
    value: str
    met: bool


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    #: rows -> (product rows/s, floor rows/s, plain rows/s) for the plot.
    curve: dict[int, dict[str, float]] = field(default_factory=dict)
    load: str = ""
    notes: list[str] = field(default_factory=list)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def input_file(data: Path, rows: int, notification: str = "NONE") -> Path:
    """The generated file for ``rows`` (made once; the name changes with the generator)."""
    name = f"invoices-{rows}-{notification.lower()}-v{GENERATOR_VERSION}.csv"
    path = data / name
    if not path.exists():
        say(f"generating {name}")
        generate.write_invoices(path, rows, notification=notification)
    return path


def _floor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.floors", *args]


def _fresh_db(folder: Path) -> Path:
    from worker.state import SQLiteStore

    shutil.rmtree(folder, ignore_errors=True)
    db = folder / "state.db"
    SQLiteStore(db).open().close()
    return db


def valid_rows(source: Path, target: Path) -> Path:
    """The file's valid rows shaped as ``invoices`` rows, by the product's own code (untimed)."""
    from tests.oracle import invoice_rows
    from worker.intake.readers import open_table
    from worker.kinds import KINDS
    from worker.kinds.context import rules_context
    from worker.kinds.invoices.validation import validate_to
    from worker.pipeline.chunks import read_all as read_chunks

    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        folder = Path(work)
        table = open_table(source, folder, KINDS.signatures)
        validate_to(table, rules_context((), {}, None), folder / "chunks", 100_000, None)
        frames = [
            invoice_rows(chunk, 1, 100_000_000_001, "https://pay.example.com/pay/")
            for _, chunk in read_chunks(folder / "chunks")
        ]
    pl.concat(frames).write_parquet(target)
    return target


@dataclass
class Floors:
    polars: measure.Run
    loads: dict[str, measure.Run]

    @property
    def best_load(self) -> tuple[str, measure.Run]:
        return min(self.loads.items(), key=lambda kv: kv[1].wall)

    @property
    def total(self) -> float:
        return self.polars.wall + self.best_load[1].wall


def _checked(run: measure.Run, what: str) -> measure.Run:
    if run.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{run.stderr[-3000:]}")
    return run


def floors(scratch: Path, source: Path) -> Floors:
    polars_run = _checked(measure.run(_floor_cmd("polars", str(source))), "polars floor")
    rows_file = valid_rows(source, scratch / "valid.parquet")
    loads = {}
    for method in ("executemany", "adbc"):
        db = _fresh_db(scratch / f"floor-{method}")
        loads[method] = _checked(
            measure.run(_floor_cmd(method, str(db), str(rows_file))), f"{method} floor"
        )
        shutil.rmtree(db.parent, ignore_errors=True)
    rows_file.unlink()
    return Floors(polars_run, loads)


def plain(scratch: Path, source: Path) -> measure.Run:
    db = _fresh_db(scratch / "plain")
    run = _checked(measure.run(_floor_cmd("plain", str(source), str(db))), "plain stack")
    shutil.rmtree(db.parent, ignore_errors=True)
    return run


def run_all(
    data: Path,
    scratch: Path,
    *,
    sizes: tuple[int, ...] = SIZES,
    big: int | None = BIG,
    plain_rows: int = 1_000_000,
    drops: int = 50,
    burst_files: int = 1000,
) -> Results:
    res = Results()
    top = max(sizes)
    plain_rate: float | None = None

    for rows in sizes:
        source = input_file(data, rows)
        say(f"floors at {rows:,} rows")
        fl = floors(scratch, source)
        method = fl.best_load[0]
        res.rows.append(
            Row(f"floor: polars rules, {rows:,}", rows, fl.polars.wall, fl.polars.peak_rss)
        )
        for name, run in fl.loads.items():
            res.rows.append(
                Row(f"floor: SQLite load ({name}), {rows:,}", rows, run.wall, run.peak_rss)
            )
        if rows <= plain_rows:
            say(f"plain stack at {rows:,} rows")
            p = plain(scratch, source)
            plain_wall, note = p.wall, ""
            plain_rate = rows / p.wall
            plain_rss: int | None = p.peak_rss
        else:
            assert plain_rate is not None, "the plain stack needs a size <= plain_rows first"
            plain_wall, note = rows / plain_rate, f"extrapolated from {plain_rows:,} rows"
            plain_rss = None
        res.rows.append(
            Row(
                f"plain stack (csv + sqlite-utils), {rows:,}",
                rows,
                plain_wall,
                plain_rss,
                note=note,
            )
        )
        say(f"run --once at {rows:,} rows")
        once = cases.run_once(scratch, f"once-{rows}", source)
        res.rows.append(
            Row(
                f"run --once, {rows:,} rows, NONE",
                rows,
                once.run.wall,
                once.run.peak_rss,
                fl.total,
                note=f"results file at {once.results_at:.2f} s; floor = polars + {method}",
            )
        )
        res.curve[rows] = {
            "product": rows / once.run.wall,
            "floor": rows / fl.total,
            "plain": rows / plain_wall,
        }
        if rows == top:
            res.targets.append(
                Target(
                    f"{rows:,} rows within 2.0x of the floor",
                    f"{once.run.wall / fl.total:.2f}x",
                    once.run.wall <= 2.0 * fl.total,
                )
            )
            res.targets.append(
                Target(
                    f"{rows:,} rows at least 8x faster than the plain stack",
                    f"{plain_wall / once.run.wall:.1f}x",
                    plain_wall >= 8 * once.run.wall,
                )
            )
            res.targets.append(
                Target(
                    f"peak RSS at {rows:,} rows <= 1 GiB",
                    f"{once.run.peak_rss / measure.MIB:.0f} MiB",
                    once.run.peak_rss <= GIB,
                )
            )
            say("validate")
            v = cases.validate(scratch, source)
            res.rows.append(
                Row(f"validate, {rows:,} rows", rows, v.wall, v.peak_rss, fl.polars.wall)
            )
            res.targets.append(
                Target(
                    f"validate {rows:,} rows within 1.3x of the polars script",
                    f"{v.wall / fl.polars.wall:.2f}x",
                    v.wall <= 1.3 * fl.polars.wall,
                )
            )
            say("run --once with EMAIL")
            email = cases.run_once(
                scratch,
                f"once-{rows}-email",
                input_file(data, rows, "EMAIL"),
                linger=EMAIL_LINGER_SECONDS,
            )
            sent = email.customer_emails
            after = email.run.wall - (email.results_at or email.run.wall)
            rate = f"{sent:,} written, {sent / after:.0f}/s after the results" if sent else "none"
            # Stopped while customer emails were still going: the results file is the end.
            wall = email.results_at if email.run.stopped else email.run.wall
            stop = f", stopped {EMAIL_LINGER_SECONDS:.0f} s after it" if email.run.stopped else ""
            res.rows.append(
                Row(
                    f"run --once, {rows:,} rows, EMAIL",
                    rows,
                    wall,
                    email.run.peak_rss,
                    fl.total,
                    note=f"results file at {email.results_at:.2f} s{stop}; customer emails: {rate}",
                )
            )

    say(f"latency: {drops} drops")
    lat = cases.latency(scratch, drops)
    res.rows.append(Row("latency p50, 10-row file, run going", 10, lat.p50, lat.peak_rss))
    res.rows.append(Row("latency p95, 10-row file, run going", 10, lat.p95, lat.peak_rss))
    res.targets.append(Target("latency p50 <= 0.5 s", f"{lat.p50:.3f} s", lat.p50 <= 0.5))
    res.targets.append(Target("latency p95 <= 1 s", f"{lat.p95:.3f} s", lat.p95 <= 1.0))

    say(f"burst: {burst_files} files")
    b = cases.burst(scratch, burst_files)
    res.rows.append(
        Row(
            f"{b.files:,} files of 10 rows at once",
            b.files * 10,
            b.wall,
            b.peak_rss,
            note=f"{b.files / b.wall:.0f} files/s",
        )
    )
    res.targets.append(Target(f"{b.files:,} files final <= 10 s", f"{b.wall:.2f} s", b.wall <= 10))

    if big:
        source = input_file(data, big)
        say(f"run --once at {big:,} rows")
        once = cases.run_once(scratch, f"once-{big}", source)
        res.rows.append(
            Row(
                f"run --once, {big:,} rows, NONE",
                big,
                once.run.wall,
                once.run.peak_rss,
                note=f"results file at {once.results_at:.2f} s",
            )
        )
        res.curve[big] = {"product": big / once.run.wall}
        res.targets.append(
            Target(
                f"peak RSS at {big:,} rows <= 1 GiB",
                f"{once.run.peak_rss / measure.MIB:.0f} MiB",
                once.run.peak_rss <= GIB,
            )
        )
    return res
