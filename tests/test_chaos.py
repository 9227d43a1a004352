"""Kill -9 at random moments, many times, then check that nothing was lost or made twice.

Seeded: a failure names its seed (it is the test id). The short version runs in
``make test``; the nightly-sized one is ``make test-slow``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import cli, cli_env, invoice_csv, invoice_row, read_results


@dataclass
class Drop:
    name: str
    data: bytes
    valid: int
    duplicate_of: str | None = None


def make_drops(rng: random.Random, count: int, max_rows: int) -> list[Drop]:
    drops: list[Drop] = []
    next_ref = 1
    for i in range(count):
        if drops and rng.random() < 0.15:
            original = rng.choice([d for d in drops if d.duplicate_of is None])
            drops.append(Drop(f"dup{i:03d}.csv", original.data, 0, original.name))
            continue
        rows, valid = [], 0
        for _ in range(rng.randint(1, max_rows)):
            bad = rng.random() < 0.05
            rows.append(invoice_row(next_ref, amount="1.00" if bad else str(rng.randint(1, 10**6))))
            valid += not bad
            next_ref += 1
        drops.append(Drop(f"f{i:03d}.csv", invoice_csv(rows).encode(), valid))
    return drops


def drop(home: Path, d: Drop) -> None:
    tmp = home / "inbox" / f".{d.name}.tmp"
    tmp.write_bytes(d.data)
    os.rename(tmp, home / "inbox" / d.name)


def spawn(home: Path, command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", command],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def chaos(
    tmp_path: Path, seed: int, kills: int, files: int, max_rows: int, per_round: int = 3
) -> None:
    rng = random.Random(seed)
    home = tmp_path
    (home / "inbox").mkdir()
    env = cli_env(home, INVOICE_WORKER_CHUNK_ROWS="300", INVOICE_WORKER_LEASE_SECONDS="5")
    drops = make_drops(rng, files, max_rows)
    pending = list(drops)
    for _ in range(kills):
        # Start a watcher and one or two workers, drop a few files, let them run a while.
        procs = [spawn(home, "watch", env)] + [
            spawn(home, "worker", env) for _ in range(rng.randint(1, 2))
        ]
        for _ in range(rng.randint(0, per_round)):
            if pending:
                drop(home, pending.pop(0))
        time.sleep(rng.uniform(0.2, 2.0))
        # Then kill -9 some of them at once, and the rest right after.
        rng.shuffle(procs)
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait(10)
    for d in pending:
        drop(home, d)
    done = cli("run", "--once", home=home, timeout=300)
    assert done.returncode == 0, f"seed {seed}: {done.stderr[-3000:]}"
    check(home, drops, seed)


def check(home: Path, drops: list[Drop], seed: int) -> None:
    conn = sqlite3.connect(home / "var" / "state.db")
    conn.row_factory = sqlite3.Row
    files = {r["name"]: r for r in conn.execute("SELECT * FROM files")}
    where = f"seed {seed}"
    # Every file dropped is answered, once, and its original kept.
    assert sorted(files) == sorted(d.name for d in drops), where
    assert not [p for p in (home / "inbox").iterdir() if not p.name.startswith(".")], where
    kept = list((home / "archive").iterdir()) + list((home / "rejected").iterdir())
    assert sorted(p.name for p in kept) == sorted(d.name for d in drops), where
    # Of identical files, the one claimed first is processed, the others are duplicates.
    groups: dict[bytes, list[Drop]] = {}
    for d in drops:
        groups.setdefault(d.data, []).append(d)
    expected_invoices = 0
    for same in groups.values():
        first, *later = sorted(same, key=lambda d: files[d.name]["id"])
        f = files[first.name]
        assert f["state"] == "processed", (where, first.name, f["state"], f["error_message"])
        valid = next(d.valid for d in same if d.duplicate_of is None)
        assert f["created"] == valid, where
        expected_invoices += valid
        results = read_results(home / "outbox" / f"{f['result_name']}.results.csv")
        assert len(results) == f["rows"], where
        for d in later:
            g = files[d.name]
            assert (g["state"], g["error_code"]) == ("rejected", "DUPLICATE_FILE"), where
            error = json.loads((home / "outbox" / f"{g['result_name']}.error.json").read_text())
            assert error["code"] == "DUPLICATE_FILE", where
    # Every valid row created exactly once.
    count, distinct = conn.execute(
        "SELECT count(*), count(DISTINCT merchant_reference) FROM invoices"
    ).fetchone()
    assert count == distinct == expected_invoices, where
    # Every email recorded once and delivered once.
    outbox = conn.execute("SELECT key, state FROM outbox").fetchall()
    assert all(state == "sent" for _, state in outbox), where
    assert len(list((home / "mail").glob("*.eml"))) == len(outbox), where


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_at_random_moments_loses_nothing_and_creates_nothing_twice(tmp_path, seed):
    chaos(tmp_path, seed, kills=20, files=12, max_rows=3000)


def test_kill_9_during_bursts_of_small_files_loses_nothing_and_creates_nothing_twice(tmp_path):
    # Up to 12 small files a round: claimed together, they go through worker/groups.py.
    chaos(tmp_path, 3, kills=12, files=60, max_rows=40, per_round=12)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 15))
def test_kill_9_nightly(tmp_path, seed):
    chaos(tmp_path, seed, kills=100, files=60, max_rows=30_000)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20, 23))
def test_kill_9_nightly_during_bursts_of_small_files(tmp_path, seed):
    chaos(tmp_path, seed, kills=60, files=300, max_rows=40, per_round=12)
