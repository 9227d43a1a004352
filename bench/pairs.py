"""The product against its floors, as interleaved pairs: product, floor, product, floor...

The machine is shared and its speed moves by tens of percent within minutes,
so one product run against one floor run says little. At each size the
product and the floor are run one after the other ``pairs`` times; each pair
gives a ratio, and the benchmark reports the median ratio with its spread
(min-max) and holds the targets to the median.

The floor of one pair is the minimal polars script plus the faster, in that
pair, of the two bulk loads (``executemany`` and ADBC) of the same valid rows.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bench import cases, measure


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _floor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.floors", *args]


def _fresh_db(folder: Path) -> Path:
    from worker.state import SQLiteStore

    shutil.rmtree(folder, ignore_errors=True)
    db = folder / "state.db"
    SQLiteStore(db).open().close()
    return db


def _checked(run: measure.Run, what: str) -> measure.Run:
    if run.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{run.stderr[-3000:]}")
    return run


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


def polars_floor(source: Path) -> measure.Run:
    return _checked(measure.run(_floor_cmd("polars", str(source))), "polars floor")


def load_floors(scratch: Path, rows_file: Path) -> dict[str, measure.Run]:
    loads = {}
    for method in ("executemany", "adbc"):
        db = _fresh_db(scratch / f"floor-{method}")
        loads[method] = _checked(
            measure.run(_floor_cmd(method, str(db), str(rows_file))), f"{method} floor"
        )
        shutil.rmtree(db.parent, ignore_errors=True)
    return loads


def copy_floor(url: str, rows_file: Path) -> measure.Run:
    """``COPY`` of the valid rows into the database at ``url`` (migrated, empty)."""
    return _checked(measure.run(_floor_cmd("copy", url, str(rows_file))), "COPY floor")


def plain(scratch: Path, source: Path) -> measure.Run:
    db = _fresh_db(scratch / "plain")
    run = _checked(measure.run(_floor_cmd("plain", str(source), str(db))), "plain stack")
    shutil.rmtree(db.parent, ignore_errors=True)
    return run


@dataclass
class Floor:
    """One measurement of the floor: the polars script and both loads."""

    polars: measure.Run
    loads: dict[str, measure.Run]

    @property
    def best_load(self) -> tuple[str, measure.Run]:
        return min(self.loads.items(), key=lambda kv: kv[1].wall)

    @property
    def total(self) -> float:
        return self.polars.wall + self.best_load[1].wall


def spread(values: list[float]) -> tuple[float, float]:
    return min(values), max(values)


@dataclass
class Paired:
    """Every pair measured at one size."""

    rows: int
    once: list[cases.OnceResult] = field(default_factory=list)
    floors: list[Floor] = field(default_factory=list)
    #: ``validate`` runs, each paired with the polars run just before it (top size only).
    validates: list[measure.Run] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [o.run.wall / f.total for o, f in zip(self.once, self.floors, strict=True)]

    @property
    def validate_ratios(self) -> list[float]:
        return [v.wall / f.polars.wall for v, f in zip(self.validates, self.floors, strict=False)]

    @property
    def product_wall(self) -> float:
        return statistics.median(o.run.wall for o in self.once)

    @property
    def results_at(self) -> float:
        return statistics.median(o.results_at or o.run.wall for o in self.once)

    @property
    def product_peak(self) -> int:
        return max(o.run.peak_rss for o in self.once)

    @property
    def floor_total(self) -> float:
        return statistics.median(f.total for f in self.floors)

    def walls(self, what: str) -> list[float]:
        """``polars``, a load's name, or ``validate``: that run's wall in every pair."""
        if what == "polars":
            return [f.polars.wall for f in self.floors]
        if what == "validate":
            return [v.wall for v in self.validates]
        return [f.loads[what].wall for f in self.floors]

    def peak(self, what: str) -> int:
        if what == "polars":
            return max(f.polars.peak_rss for f in self.floors)
        if what == "validate":
            return max(v.peak_rss for v in self.validates)
        return max(f.loads[what].peak_rss for f in self.floors)

    def winners(self) -> str:
        """Which load was the faster, over the pairs: ``adbc (3 of 3)``."""
        counts: dict[str, int] = {}
        for f in self.floors:
            counts[f.best_load[0]] = counts.get(f.best_load[0], 0) + 1
        return ", ".join(f"{m} ({n} of {len(self.floors)})" for m, n in counts.items())


def measure_size(
    scratch: Path, source: Path, rows: int, pairs: int, *, validate: bool = False
) -> Paired:
    """``pairs`` times: ``run --once``, the polars floor, [``validate``], the two loads."""
    result = Paired(rows)
    rows_file = valid_rows(source, scratch / "valid.parquet")
    try:
        for k in range(pairs):
            say(f"pair {k + 1} of {pairs} at {rows:,} rows")
            result.once.append(cases.run_once(scratch, f"once-{rows}", source))
            polars = polars_floor(source)
            if validate:
                result.validates.append(cases.validate(scratch, source))
            result.floors.append(Floor(polars, load_floors(scratch, rows_file)))
    finally:
        rows_file.unlink(missing_ok=True)
    return result
