"""``python -m bench`` (``make bench``): generate the inputs, run the floors and the product,
print the table and write it, with its plot, to ``docs/benchmark.md``.

\b
Examples:
  python -m bench                       # the full run: 10k, 100k, 1M, 10M rows (about 10 min)
  python -m bench --quick               # 10k and 100k only, fewer drops: for development
  python -m bench --sizes 100000 --no-big --out -
  python -m bench --only latency --out -  # the latency cases alone
  python -m bench --only pg --sizes 100000 --out -  # PostgreSQL: run --once and two hosts
  python -m bench --pairs 5             # more product/floor pairs at each size
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import generate, report, suite

ROOT = Path(__file__).resolve().parent.parent


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10k and 100k rows, 20 drops, 200 files")
    p.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), default=None)
    p.add_argument("--no-big", action="store_true", help="skip the 10M-row memory case")
    p.add_argument(
        "--plain-rows",
        type=int,
        default=1_000_000,
        help="largest plain-stack run; larger sizes are extrapolated from it (flattering it)",
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=None,
        help=f"interleaved product/floor pairs at each size (default {suite.PAIRS}, quick 2)",
    )
    p.add_argument(
        "--shape",
        choices=sorted(generate.SHAPES),
        default=generate.DEFAULT_SHAPE,
        help="the generator for every case (sequential: the one before issue 16)",
    )
    p.add_argument(
        "--only",
        type=lambda s: tuple(s.split(",")),
        default=suite.PARTS,
        help=f"comma list of {', '.join(suite.PARTS)}",
    )
    p.add_argument("--data", type=Path, default=ROOT / "bench" / "data")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmark.md"), help="'-' for none")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    unknown = set(args.only) - set(suite.PARTS)
    if unknown:
        raise SystemExit(f"--only: unknown parts {sorted(unknown)}; choose from {suite.PARTS}")
    sizes = args.sizes or ((10_000, 100_000) if args.quick else suite.SIZES)
    big = None if (args.no_big or args.quick) else suite.BIG
    args.data.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=args.data))
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = load_average()
    try:
        res = suite.run_all(
            args.data,
            scratch,
            sizes=sizes,
            big=big,
            plain_rows=min(args.plain_rows, max(sizes)),
            drops=20 if args.quick else 50,
            settle_drops=10 if args.quick else suite.SETTLE_DROPS,
            burst_files=200 if args.quick else 1000,
            mail_rows=2_000 if args.quick else 20_000,
            pairs_count=args.pairs or (2 if args.quick else suite.PAIRS),
            shape=args.shape,
            only=args.only,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    res.load = f"{load_before} at start, {load_average()} at end (1, 5, 15 min)"
    print(report.text_table(res))
    if args.out != "-":
        write_docs(Path(args.out), res, started)
    return 0


def write_docs(target: Path, res: suite.Results, started: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    svg = target.with_suffix(".svg")
    svg.write_text(report.svg_plot(res))
    cpu = platform.processor() or platform.machine()
    target.write_text(
        f"""# Benchmark

`make bench` on {started}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}.
Load average: {res.load}. The machine is shared, so figures move by 10-30 % within
minutes: every ratio against a floor is the median of {res.pairs} interleaved pairs
(product, floor, product, floor ...) made in the same `make bench`, "x floor min-max" is
their spread, and the targets are judged on the median. Inputs: the `{res.shape}`
generator (see below).

{report.markdown_table(res)}

![rows/s against file size]({svg.name})

## Targets (issues 5, 15, 16 and 18)

{report.targets_markdown(res)}

{DEFINITIONS}
"""
    )


DEFINITIONS = """## What each line measures

- **inputs**: seeded files from `bench/generate.py`, exactly 1 % bad rows of 21 kinds (each
  one the real validator rejects with its own code). The default `realistic` shape
  (`bench/realistic.py`) looks like an ERP's export: references random and unique, half
  UUIDs, half a prefix plus 14 random letters; a unique expiry instant on every row, with
  offsets from -05:00 to +05:30 (some `Z`, some with milliseconds, some with a space);
  long quoted descriptions with commas and quotes; names with accents; optional columns
  filled or blank at realistic rates (name 92 %, phone 65 %, description 85 %, payment
  account 40 %, link command 75 %, return URL 55 %). The `sequential` shape is the
  generator before issue 16 (`INV-000000001` references, four expiry values): one case
  shows it, `--shape sequential` runs everything on it.
- **run --once**: `invoice-worker run --once` as its own process on a fresh home folder
  whose inbox already holds the file (settle time 0.25 s); wall time from start to exit,
  that is results file, archive, and both administrator emails written as `.eml`. Peak
  RSS is the sum over the process tree (`run`, its other worker processes, one per core,
  and the embedded redis-server); for a paired case, the highest of the pairs.
- **floor**: the sum of two separate processes, run in the same pair: the minimal
  polars script (`bench/floors.py polars`: read every column as text, every rule of
  SPEC 3.1 as the product's own expressions, the per-row error table), and the fastest
  bulk load of the same valid rows, already shaped as `invoices` rows, into the product's
  schema in one transaction, the faster in that pair of `executemany` and ADBC
  (`adbc-driver-sqlite`). The floor rows show the median of each part over the pairs.
- **pairs**: at each size, `--pairs` times (default 3): `run --once`, the polars script,
  (`validate` at the largest size), the two loads. Each pair gives one ratio; the table
  shows the median and the min-max.
- **plain stack**: a `csv.DictReader` loop applying the same rules in Python
  (email-validator per address), then sqlite-utils `insert_all` of the valid rows in one
  transaction. One run at every size up to `--plain-rows` (1M by default, about
  60 s here); past that it is extrapolated linearly, which flatters it: SQLite inserts
  get slower as the table and its indexes grow.
- **validate**: `invoice-worker validate FILE`; its floor is the polars script alone, the
  run just before it in the same pair.
- **latency, run going**: `invoice-worker run` already going (settle time 0.25 s);
  10-row files written under a temp name and renamed into `inbox/` one at a time; time
  from the rename to the results file.
- **latency, default settle** (issue 15): the same with the default `settle_seconds`,
  for a file renamed in (from the rename) and for a file written in place under its
  final name with open, write, close (from the close). Either proves the file complete
  (SPEC 11), so both are held to p50 <= 0.1 s and p95 <= 0.2 s.
- **files at once**: 1,000 files of 10 rows renamed into `inbox/` in a burst with `run`
  going; time until the state database has all of them in a final state.
- **run --once, PostgreSQL** (issue 18): the same `run --once` with `database_url` set to
  a fresh, empty database on one PostgreSQL 16 (the `pgserver` wheel's, started for the
  `pg` part under `bench/data/` and removed after); the product creates its tables as
  it starts, as a user's first run does. The size is the largest of `--sizes` (1M by
  default, 100k with `--quick`).
- **floor, PostgreSQL pairs**: in the same pair, the polars script and one `COPY
  invoices (...) FROM STDIN` (psycopg, CSV that polars writes) of the same valid rows,
  already shaped as `invoices` rows, into a fresh database that already has the
  product's schema (the `worker.state.schema_pg` migrations, applied before the clock
  starts), in one transaction. The pair fails if the COPY and the product do not end
  with the same number of invoices.
- **two hosts, PostgreSQL**: two `invoice-worker run` processes, each with a home and a
  `var/` of its own, sharing one database, one Redis (an embedded redis-server the
  benchmark starts) and the inbox, outbox, archive and rejected folders
  (`INVOICE_WORKER_*_DIR`); the burst's 1,000 files of 10 rows renamed into the shared
  inbox; time until the database has all of them in a final state. "claimed" counts
  each host's `file.received` lines. The target of 10 s is ours: issue 18 sets none.
- **10M rows**: the memory case: peak RSS must not grow with the file.
"""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
