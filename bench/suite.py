"""What ``make bench`` runs: inputs, floors, product cases, and the targets they are held to."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench import cases, generate, live, mail_cases, measure, pairs

GENERATOR_VERSION = 2
SIZES = (10_000, 100_000, 1_000_000)
BIG = 10_000_000
GIB = 1 << 30
#: How long ``run --once`` may go on sending customer emails after the results file.
EMAIL_LINGER_SECONDS = 30.0
#: Interleaved product/floor pairs at each size; the ratio is their median.
PAIRS = 3
#: Drops for each latency case at the default settle time (each costs that time today).
SETTLE_DROPS = 20


@dataclass
class Row:
    """One line of the table."""

    case: str
    rows: int | None
    wall: float | None
    peak_rss: int | None = None
    floor: float | None = None
    note: str = ""
    #: product/floor of each pair, when the row is a paired case.
    ratios: tuple[float, ...] = ()

    @property
    def rate(self) -> float | None:
        return self.rows / self.wall if self.rows and self.wall else None

    @property
    def ratio(self) -> float | None:
        if self.ratios:
            return statistics.median(self.ratios)
        return self.wall / self.floor if self.wall and self.floor else None

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.ratios), max(self.ratios)) if len(self.ratios) > 1 else None


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
    pairs: int = PAIRS
    shape: str = generate.DEFAULT_SHAPE
    #: (rows, rows/s) of the largest plain-stack run, to extrapolate from.
    plain_rate: tuple[int, float] | None = None


say = pairs.say


def input_file(
    data: Path, rows: int, notification: str = "NONE", shape: str = generate.DEFAULT_SHAPE
) -> Path:
    """The generated file for ``rows`` (made once; the name changes with the generator)."""
    name = f"invoices-{rows}-{notification.lower()}-{shape}-v{GENERATOR_VERSION}.csv"
    path = data / name
    if not path.exists():
        say(f"generating {name}")
        generate.write_invoices(path, rows, notification=notification, shape_name=shape)
    return path


def _median_row(case: str, p: pairs.Paired, what: str) -> Row:
    walls = p.walls(what)
    low, high = pairs.spread(walls)
    note = f"median of {len(walls)}: {low:.2f}-{high:.2f} s" if len(walls) > 1 else ""
    return Row(case, p.rows, statistics.median(walls), p.peak(what), note=note)


def ratio_text(row: Row) -> str:
    text = f"{row.ratio:.2f}x"
    return f"{text} (median; {row.spread[0]:.2f}-{row.spread[1]:.2f}x)" if row.spread else text


def sized_cases(
    res: Results, data: Path, scratch: Path, rows: int, *, plain_rows: int, top: bool
) -> None:
    """At one size: the paired product and floors, the plain stack, and at the top size
    ``validate``, EMAIL and the old generator's shape."""
    source = input_file(data, rows, shape=res.shape)
    p = pairs.measure_size(scratch, source, rows, res.pairs, validate=top)
    res.rows.append(_median_row(f"floor: polars rules, {rows:,}", p, "polars"))
    for method in ("executemany", "adbc"):
        res.rows.append(_median_row(f"floor: SQLite load ({method}), {rows:,}", p, method))
    plain_wall, note, plain_rss = _plain(res, scratch, source, rows, plain_rows)
    res.rows.append(
        Row(f"plain stack (csv + sqlite-utils), {rows:,}", rows, plain_wall, plain_rss, note=note)
    )
    low, high = pairs.spread([o.run.wall for o in p.once])
    once = Row(
        f"run --once, {rows:,} rows, NONE",
        rows,
        p.product_wall,
        p.product_peak,
        p.floor_total,
        note=(
            f"median of {res.pairs} pairs ({low:.2f}-{high:.2f} s)"
            if len(p.once) > 1
            else "one pair"
        )
        + f"; results file at {p.results_at:.2f} s; floor = polars + {p.winners()}",
        ratios=tuple(p.ratios),
    )
    res.rows.append(once)
    res.curve[rows] = {
        "product": rows / p.product_wall,
        "floor": rows / p.floor_total,
        "plain": rows / plain_wall,
    }
    if not top:
        return
    res.targets += [
        Target(
            f"{rows:,} rows within 1.2x of the floor",
            ratio_text(once),
            statistics.median(p.ratios) <= 1.2,
        ),
        Target(
            f"{rows:,} rows at least 8x faster than the plain stack",
            f"{plain_wall / p.product_wall:.1f}x (median product run)",
            plain_wall >= 8 * p.product_wall,
        ),
        Target(
            f"peak RSS at {rows:,} rows <= 1 GiB",
            f"{p.product_peak / measure.MIB:.0f} MiB (highest of the pairs)",
            p.product_peak <= GIB,
        ),
    ]
    v = _median_row(f"validate, {rows:,} rows", p, "validate")
    v.floor, v.ratios = statistics.median(p.walls("polars")), tuple(p.validate_ratios)
    v.note = "; ".join(n for n in (v.note, "each paired with the polars run before it") if n)
    res.rows.append(v)
    res.targets.append(
        Target(
            f"validate {rows:,} rows within 1.3x of the polars script",
            ratio_text(v),
            statistics.median(p.validate_ratios) <= 1.3,
        )
    )
    res.rows.append(email_case(data, scratch, rows, res.shape))
    if res.shape != "sequential":
        old = cases.run_once(
            scratch, f"once-{rows}-old", input_file(data, rows, shape="sequential")
        )
        res.rows.append(
            Row(
                f"run --once, {rows:,} rows, NONE, old generator (sequential references)",
                rows,
                old.run.wall,
                old.run.peak_rss,
                note=f"one run; results file at {old.results_at:.2f} s; the shape before issue 16",
            )
        )


def _plain(
    res: Results, scratch: Path, source: Path, rows: int, plain_rows: int
) -> tuple[float, str, int | None]:
    """The plain stack's wall (one run, or extrapolated past ``plain_rows``)."""
    if rows <= plain_rows:
        say(f"plain stack at {rows:,} rows")
        run = pairs.plain(scratch, source)
        res.plain_rate = (rows, rows / run.wall)
        return run.wall, "one run", run.peak_rss
    if res.plain_rate is None:
        raise RuntimeError("the plain stack needs a size <= plain_rows first")
    at, rate = res.plain_rate
    return rows / rate, f"extrapolated from {at:,} rows", None


def email_case(data: Path, scratch: Path, rows: int, shape: str) -> Row:
    say("run --once with EMAIL")
    email = cases.run_once(
        scratch,
        f"once-{rows}-email",
        input_file(data, rows, "EMAIL", shape),
        linger=EMAIL_LINGER_SECONDS,
    )
    sent = email.customer_emails
    after = email.run.wall - (email.results_at or email.run.wall)
    rate = f"{sent:,} written, {sent / after:.0f}/s after the results" if sent else "none"
    # Stopped while customer emails were still going: the results file is the end.
    wall = email.results_at if email.run.stopped else email.run.wall
    stop = f", stopped {EMAIL_LINGER_SECONDS:.0f} s after it" if email.run.stopped else ""
    return Row(
        f"run --once, {rows:,} rows, EMAIL",
        rows,
        wall,
        email.run.peak_rss,
        note=f"one run; results file at {email.results_at:.2f} s{stop}; customer emails: {rate}",
    )


def latency_cases(res: Results, scratch: Path, drops: int, settle_drops: int) -> None:
    say(f"latency: {drops} drops, settle {cases.SETTLE_SECONDS} s")
    lat = live.latency(scratch, drops)
    res.rows.append(Row("latency p50, 10-row file, run going", 10, lat.p50, lat.peak_rss))
    res.rows.append(Row("latency p95, 10-row file, run going", 10, lat.p95, lat.peak_rss))
    res.targets.append(Target("latency p50 <= 0.5 s", f"{lat.p50:.3f} s", lat.p50 <= 0.5))
    res.targets.append(Target("latency p95 <= 1 s", f"{lat.p95:.3f} s", lat.p95 <= 1.0))
    # Issue 15: a renamed file, or one closed by its writer, is claimed at once.
    for arrival, since in (("rename", "the rename"), ("in place", "the close")):
        say(f"latency: {settle_drops} drops, {arrival}, default settle_seconds")
        lat = live.latency(scratch, settle_drops, arrival=arrival, settle=None)
        how = "renamed in" if arrival == "rename" else "written in place"
        for name, value in (("p50", lat.p50), ("p95", lat.p95)):
            res.rows.append(
                Row(
                    f"latency {name} from {since}, 10-row file {how}, default settle",
                    10,
                    value,
                    lat.peak_rss,
                    note=f"{len(lat.samples)} drops",
                )
            )
        res.targets.append(
            Target(f"{how}: latency p50 <= 0.1 s", f"{lat.p50:.3f} s", lat.p50 <= 0.1)
        )
        res.targets.append(
            Target(f"{how}: latency p95 <= 0.2 s", f"{lat.p95:.3f} s", lat.p95 <= 0.2)
        )


def burst_case(res: Results, scratch: Path, files: int) -> None:
    say(f"burst: {files} files")
    b = live.burst(scratch, files)
    res.rows.append(
        Row(
            f"{b.files:,} files of 10 rows at once",
            b.files * 10,
            b.wall,
            b.peak_rss,
            note=f"{b.files / b.wall:.0f} files/s",
        )
    )
    res.targets.append(Target(f"{b.files:,} files final <= 5 s", f"{b.wall:.2f} s", b.wall <= 5))


def big_case(res: Results, data: Path, scratch: Path, big: int) -> None:
    source = input_file(data, big, shape=res.shape)
    say(f"run --once at {big:,} rows")
    once = cases.run_once(scratch, f"once-{big}", source)
    res.rows.append(
        Row(
            f"run --once, {big:,} rows, NONE",
            big,
            once.run.wall,
            once.run.peak_rss,
            note=f"one run; results file at {once.results_at:.2f} s",
        )
    )
    res.curve[big] = {"product": big / once.run.wall}
    res.targets.append(
        Target(
            f"peak RSS at {big:,} rows <= 600 MiB",
            f"{once.run.peak_rss / measure.MIB:.0f} MiB",
            once.run.peak_rss <= 600 * measure.MIB,
        )
    )


def mail_case(res: Results, data: Path, scratch: Path, rows: int, million: bool) -> None:
    """Customer emails (issue 16): ``.eml`` at disk speed, SMTP against its floor, and
    1M rows all EMAIL with default settings."""
    runs = [("eml", mail_cases.eml), ("smtp", mail_cases.smtp)]
    if million:
        runs.append(("million", mail_cases.million))
    for name, case in runs:
        size = 1_000_000 if name == "million" else rows
        say(f"mail: {name}, {size:,} rows")
        source = mail_cases.email_input(data, size)
        kwargs = {"pairs": res.pairs} if name == "smtp" else {}
        got = case(scratch, source, rows=size, **kwargs)
        if name == "smtp":
            wall = statistics.median(got["product_s"])
            note = (
                f"{got['emails']:,} emails, {got['emails_per_s']:,}/s; smtplib floor "
                f"{got['floor_emails_per_s']:,}/s; {got['ratio']}x (median of {got['pairs']}; "
                f"{got['ratio_spread'][0]}-{got['ratio_spread'][1]}x)"
            )
            value = (
                f"{got['ratio']:.2f}x (median; {got['ratio_spread'][0]}-{got['ratio_spread'][1]}x)"
            )
        else:
            wall = got["mail_phase_s"] if name == "eml" else got["wall_s"]
            note = (
                f"{got['emails']:,} emails, {got['emails_per_s']:,}/s from the results file; "
                f"whole run {got['wall_s']} s"
            )
            value = (
                f"{got['emails_per_s']:,} emails/s"
                if name == "eml"
                else f"{got['wall_s']:.0f} s for {got['emails']:,} emails"
            )
        res.rows.append(
            Row(
                got["case"], size, wall, got.get("peak_rss_mib", 0) * measure.MIB or None, note=note
            )
        )
        res.targets.append(Target(f"{got['case']}: {got['target']}", value, bool(got["met"])))


#: The parts of a run, in order; ``--only`` picks some of them.
PARTS = ("sizes", "latency", "burst", "mail", "pg", "big")


def run_all(
    data: Path,
    scratch: Path,
    *,
    sizes: tuple[int, ...] = SIZES,
    big: int | None = BIG,
    plain_rows: int = 1_000_000,
    drops: int = 50,
    settle_drops: int = SETTLE_DROPS,
    burst_files: int = 1000,
    mail_rows: int = 20_000,
    pairs_count: int = PAIRS,
    shape: str = generate.DEFAULT_SHAPE,
    only: tuple[str, ...] = PARTS,
) -> Results:
    res = Results(pairs=pairs_count, shape=shape)
    if "sizes" in only:
        for rows in sizes:
            sized_cases(res, data, scratch, rows, plain_rows=plain_rows, top=rows == max(sizes))
    if "latency" in only:
        latency_cases(res, scratch, drops, settle_drops)
    if "burst" in only:
        burst_case(res, scratch, burst_files)
    if "mail" in only:
        mail_case(res, data, scratch, mail_rows, million=bool(big))
    if "pg" in only:
        # Imported here: it builds this module's rows, and loads pgserver and psycopg.
        from bench import pg_cases

        pg_cases.run(res, data, scratch, max(sizes), burst_files)
    if big and "big" in only:
        big_case(res, data, scratch, big)
    return res
