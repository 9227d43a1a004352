"""Customer emails, end to end: ``run --once`` on files whose every row asks for an EMAIL.

Each case is a function returning a dict of figures (its target, and whether it
was met), run the way :mod:`bench.cases` runs the product: a fresh home, the
input hard-linked in, the whole ``invoice-worker run --once`` timed by
:mod:`bench.measure`.

- :func:`eml` - 20,000 rows to ``.eml`` files with ``mail_rate = 0``: emails a
  second, from the results file (processing done) to the last file written.
- :func:`smtp` - the same over SMTP to an aiosmtpd server on 127.0.0.1, against
  a floor measured on the same server in the same run: a minimal script sending
  the same number of pre-built messages over one smtplib connection. The ratio
  is the median of interleaved pairs (product, floor, product, floor ...).
- :func:`million` - 1M rows with default settings: every ``.eml`` written
  within 5 minutes (files are never paced).

    python -m bench.mail_cases eml|smtp|million [--rows N] [--pairs N] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from bench import generate, measure
from bench.cases import discard, fresh_home, place, product_command, product_env

EML_TARGET_PER_S = 5000.0
SMTP_TARGET_RATIO = 1.5
MILLION_TARGET_S = 300.0
ROOT = Path(__file__).resolve().parent.parent


def email_input(data: Path, rows: int) -> Path:
    """The generated invoice file of ``rows`` rows, all EMAIL (made once)."""
    path = data / f"invoices-{rows}-email-mail.csv"
    if not path.exists():
        generate.write_invoices(path, rows, notification="EMAIL")
    return path


def _once(home: Path, source: Path, timeout: float, **settings: str) -> measure.Run:
    place(source, home / "inbox")
    results = home / "outbox" / f"{source.name}.results.csv"
    done = measure.run(
        product_command("run", "--once"),
        env=product_env(home) | {f"INVOICE_WORKER_{k.upper()}": v for k, v in settings.items()},
        cwd=home,
        timeout=timeout,
        mark=results.exists,
    )
    if done.returncode != 0 or done.stopped or not results.exists():
        raise RuntimeError(f"run --once failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def _sent(home: Path) -> int:
    db = home / "var" / "state.db"
    sql = "SELECT count(*) FROM invoices WHERE email_state = 'sent'"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _mail_phase(home: Path, source: Path) -> tuple[int, float]:
    """(customer .eml files, seconds from the results file to the last of them)."""
    results = home / "outbox" / f"{source.name}.results.csv"
    start = results.stat().st_mtime
    files = [e for e in os.scandir(home / "mail") if e.name.startswith("invoice-")]
    last = max(e.stat().st_mtime for e in files)
    return len(files), last - start


# -- (a) .eml files ------------------------------------------------------------------


def eml(scratch: Path, source: Path | None = None, rows: int = 20_000) -> dict[str, Any]:
    """``run --once``, every row EMAIL, ``mail_rate = 0``, to ``.eml`` files."""
    source = source or email_input(scratch, rows)
    home = fresh_home(scratch, "mail-eml")
    done = _once(home, source, timeout=1800, mail_rate="0")
    files, phase = _mail_phase(home, source)
    sent = _sent(home)
    discard(home)
    rate = files / phase
    return {
        "case": f"{rows:,} rows, EMAIL, run --once, mail_rate = 0, to .eml",
        "emails": files,
        "recorded_sent": sent,
        "wall_s": round(done.wall, 2),
        "results_at_s": round(done.marked_at or 0, 2),
        "mail_phase_s": round(phase, 2),
        "emails_per_s": round(rate),
        "emails_per_s_whole_run": round(files / done.wall),
        "peak_rss_mib": round(done.peak_mib),
        "target": f">= {EML_TARGET_PER_S:,.0f} emails/s",
        "met": rate >= EML_TARGET_PER_S and sent == files,
    }


# -- (b) SMTP, against a floor ----------------------------------------------------


class SinkServer:
    """aiosmtpd on 127.0.0.1 in its own process, taking every message and writing the
    time it took each to a file (one line each), so a run's span is read afterwards."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "smtp-accepted.log"
        self.log.write_text("")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.mail_cases", "serve", str(self.port), str(self.log)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the SMTP sink did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def accepted(self) -> list[float]:
        return [float(x) for x in self.log.read_text().split()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def serve(port: int, log: Path) -> None:
    """The sink: accept everything, note the time."""
    import asyncio

    from aiosmtpd.controller import Controller

    out = open(log, "a", buffering=1)  # noqa: SIM115 - the process's lifetime

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            out.write(f"{time.time():.6f}\n")
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


def floor_messages(count: int) -> list[tuple[str, str, bytes]]:
    """``count`` customer emails as the product builds them, as (from, to, CRLF bytes)."""
    from notifications.customers import Invoice, Merchant, invoice_email

    merchant = Merchant(name="invoice-worker", sender="invoice-worker@localhost")
    out = []
    for n in range(count):
        invoice = Invoice(
            number=100_000_000_001 + n,
            email=f"customer{n}@mail{n % 97}.example.com",
            name=f"Customer {n}",
            language=("en", "ar", "fr", "rw")[n * 7 % 4],
            amount=(n * 7919) % 9_999_900 + 100,
            currency=("USD", "RWF", "JOD", "EUR", "KES")[n % 5],
            expires_at="2099-12-31T23:59:00.000000Z",
            description=f"Order {n} for services rendered",
            link=f"https://pay.example.com/pay/{n:032x}",
        )
        data = invoice_email(merchant, invoice).as_bytes().replace(b"\n", b"\r\n")
        out.append((merchant.sender, invoice.email, data))
    return out


def smtp_floor(url_port: int, messages: list[tuple[str, str, bytes]]) -> float:
    """Seconds to send pre-built messages over one smtplib connection."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", url_port, timeout=30) as conn:
        conn.ehlo()
        for sender, recipient, data in messages:
            conn.sendmail(sender, [recipient], data)
    return time.perf_counter() - start


def smtp(
    scratch: Path, source: Path | None = None, rows: int = 20_000, pairs: int = 3
) -> dict[str, Any]:
    """``run --once`` over SMTP to aiosmtpd, ``mail_rate = 0``, vs the smtplib floor."""
    source = source or email_input(scratch, rows)
    server = SinkServer(scratch)
    product: list[float] = []
    floors: list[float] = []
    emails = 0
    try:
        messages: list[tuple[str, str, bytes]] | None = None
        for _ in range(pairs):
            home = fresh_home(scratch, "mail-smtp")
            before = len(server.accepted())
            _once(home, source, timeout=1800, smtp_url=server.url, mail_rate="0")
            start = (home / "outbox" / f"{source.name}.results.csv").stat().st_mtime
            times = server.accepted()[before:]
            emails = _sent(home)
            discard(home)
            product.append(max(times) - start)
            if messages is None:
                messages = floor_messages(emails)
            floors.append(smtp_floor(server.port, messages))
    finally:
        server.stop()
    ratios = sorted(p / f for p, f in zip(product, floors, strict=True))
    ratio = statistics.median(ratios)
    return {
        "case": f"{rows:,} rows, EMAIL, run --once, mail_rate = 0, SMTP to aiosmtpd on 127.0.0.1",
        "emails": emails,
        "pairs": pairs,
        "product_s": [round(p, 2) for p in product],
        "floor_s": [round(f, 2) for f in floors],
        "emails_per_s": round(emails / statistics.median(product)),
        "floor_emails_per_s": round(emails / statistics.median(floors)),
        "ratio": round(ratio, 2),
        "ratio_spread": [round(ratios[0], 2), round(ratios[-1], 2)],
        "target": f"<= {SMTP_TARGET_RATIO}x the floor (one smtplib connection, pre-built)",
        "met": ratio <= SMTP_TARGET_RATIO,
    }


# -- (c) a million rows, default settings ---------------------------------------------


def million(scratch: Path, source: Path | None = None, rows: int = 1_000_000) -> dict[str, Any]:
    """``run --once`` on 1M rows, all EMAIL, default settings: every .eml in 5 minutes."""
    source = source or email_input(scratch, rows)
    home = fresh_home(scratch, "mail-million")
    done = _once(home, source, timeout=3600)
    files, phase = _mail_phase(home, source)
    sent = _sent(home)
    discard(home)
    return {
        "case": f"{rows:,} rows, EMAIL, run --once, default settings (mail_rate = 50), .eml",
        "emails": files,
        "recorded_sent": sent,
        "wall_s": round(done.wall, 1),
        "results_at_s": round(done.marked_at or 0, 1),
        "mail_phase_s": round(phase, 1),
        "emails_per_s": round(files / phase),
        "peak_rss_mib": round(done.peak_mib),
        "target": f"every .eml written in <= {MILLION_TARGET_S:.0f} s",
        "met": done.wall <= MILLION_TARGET_S and sent == files,
    }


CASES = {"eml": eml, "smtp": smtp, "million": million}


@contextmanager
def _scratch(data: Path) -> Iterator[Path]:
    data.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="mail-", dir=data))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(int(argv[1]), Path(argv[2]))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.mail_cases")
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--rows", type=int)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--data", type=Path, default=ROOT / "bench" / "data")
    args = p.parse_args(argv)
    kwargs: dict[str, Any] = {}
    if args.rows:
        kwargs["rows"] = args.rows
    if args.case == "smtp":
        kwargs["pairs"] = args.pairs
    rows = args.rows or (1_000_000 if args.case == "million" else 20_000)
    source = email_input(args.data, rows)
    with _scratch(args.data) as scratch:
        print(json.dumps(CASES[args.case](scratch, source, **kwargs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
