"""Kill -9 at random moments, many times, then check that nothing was lost or made twice:
one home on SQLite, and two hosts sharing one PostgreSQL, one Redis and their folders.

Seeded: a failure names its seed (it is the test id). The short version runs in
``make test``; the nightly-sized one is ``make test-slow``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from helpers import cli, cli_env, invoice_csv, invoice_row, read_results
from psycopg.rows import dict_row
from test_hosts import Hosts

from worker.state.files import FINAL_STATES


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
    check(sqlite_query(home / "var" / "state.db"), home, [home / "mail"], drops, seed)


#: Runs one SQL query on the state the checks read; returns its rows as dicts.
Query = Callable[[str], list[dict[str, Any]]]


def sqlite_query(path: Path) -> Query:
    def query(sql: str) -> list[dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql)]

    return query


def postgres_query(url: str) -> Query:
    def query(sql: str) -> list[dict[str, Any]]:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(sql).fetchall()

    return query


def check(query: Query, shared: Path, mail: list[Path], drops: list[Drop], seed: int) -> None:
    """Nothing lost, nothing twice: ``shared`` holds inbox/outbox/archive/rejected, ``mail``
    every host's ``mail/`` folder."""
    files = {r["name"]: r for r in query("SELECT * FROM files")}
    where = f"seed {seed}"
    # Every file dropped is answered, once, and its original kept.
    assert sorted(files) == sorted(d.name for d in drops), where
    assert not [p for p in (shared / "inbox").iterdir() if not p.name.startswith(".")], where
    kept = list((shared / "archive").iterdir()) + list((shared / "rejected").iterdir())
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
        results = read_results(shared / "outbox" / f"{f['result_name']}.results.csv")
        assert len(results) == f["rows"], where
        for d in later:
            g = files[d.name]
            assert (g["state"], g["error_code"]) == ("rejected", "DUPLICATE_FILE"), where
            error = json.loads((shared / "outbox" / f"{g['result_name']}.error.json").read_text())
            assert error["code"] == "DUPLICATE_FILE", where
    # Every valid row created exactly once.
    [made] = query("SELECT count(*) AS n, count(DISTINCT merchant_reference) AS refs FROM invoices")
    assert made["n"] == made["refs"] == expected_invoices, where
    # Every email recorded once, sent, and delivered: an .eml is named by its message, so
    # on one host a repeat replaces it. Another host's repeat (it took over the message
    # of one killed mid-send) lands in that host's own mail/: one more send, never a loss.
    outbox = query("SELECT id, key, state FROM outbox")
    assert all(r["state"] == "sent" for r in outbox), where
    expected = {f"{r['id']:08d}-{r['key'].replace(':', '-')}.eml" for r in outbox}
    delivered = [p.name for folder in mail if folder.exists() for p in folder.glob("*.eml")]
    assert set(delivered) == expected, where


class KillableHosts(Hosts):
    """Hosts each in a process group of its own, so that a kill takes the whole host: its
    ``run`` and the worker processes it started, as a power cut would."""

    def start(self, name: str, **extra: str) -> subprocess.Popen[bytes]:
        home = self.root / name
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"],
            env=self.env(name, **extra),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(home / "run.log").open("ab"),
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        super().stop()
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def two_hosts(tmp_path: Path, database_url_factory: Any, redis_url: str) -> Iterator[Hosts]:
    # The session's Redis is shared with other tests: none of their messages (file ids of
    # another database) reach these hosts, and none these hosts leave behind reach theirs.
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    h = KillableHosts(tmp_path, database_url_factory(), redis_url)
    yield h
    h.stop()
    client.flushdb()
    client.close()


HOSTS = ("host-a", "host-b")


def two_host_chaos(
    hosts: KillableHosts, seed: int, kills: int, files: int, max_rows: int, per_round: int = 3
) -> None:
    rng = random.Random(seed)
    drops = make_drops(rng, files, max_rows)
    pending = list(drops)
    env = {"INVOICE_WORKER_CHUNK_ROWS": "300"}
    running = {name: hosts.start(name, **env) for name in HOSTS}
    for _ in range(kills):
        for _ in range(rng.randint(0, per_round)):
            if pending:
                drop(hosts.shared, pending.pop(0))
        time.sleep(rng.uniform(0.2, 2.0))
        # One host dies, its var/ sometimes with it (the machine replaced); the other runs
        # on alone a while, then the dead one comes back.
        victim = rng.choice(HOSTS)
        hosts.kill(running[victim])
        if rng.random() < 0.3:
            shutil.rmtree(hosts.root / victim / "var" / "work", ignore_errors=True)
        time.sleep(rng.uniform(0, 1.5))
        running[victim] = hosts.start(victim, **env)
    for d in pending:
        drop(hosts.shared, d)
    query = postgres_query(hosts.database_url)
    final = ",".join(f"'{s}'" for s in FINAL_STATES)

    def done() -> bool:
        [left] = query(
            f"SELECT count(*) FILTER (WHERE state IN ({final})) AS final, count(*) AS n,"
            " (SELECT count(*) FROM outbox WHERE state <> 'sent') AS unsent FROM files"
        )
        return left["final"] == left["n"] == len(drops) and left["unsent"] == 0

    hosts.wait(done, timeout=120, what=f"seed {seed}: every file final")
    hosts.stop()
    mail = [hosts.root / name / "mail" for name in HOSTS]
    check(query, hosts.shared, mail, drops, seed)


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


@pytest.mark.parametrize("seed", [1])
def test_two_hosts_on_postgresql_one_killed_at_random_moments_lose_nothing_and_make_nothing_twice(
    two_hosts, seed
):
    two_host_chaos(two_hosts, seed, kills=8, files=12, max_rows=3000)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(30, 34))
def test_two_hosts_on_postgresql_nightly(two_hosts, seed):
    two_host_chaos(two_hosts, seed, kills=60, files=60, max_rows=30_000, per_round=4)
