"""``database_url``: the real worker on a real PostgreSQL (pgserver) with a password.

It connects and migrates at start; a database not up yet is waited for, logged; wrong
credentials stop it at once with a message; the password is never written anywhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import cli, cli_env, drop, invoice_csv, invoice_row

from worker.errors import ConfigError
from worker.settings import load

USER = "invoicer"
PASSWORD = "Sup3r-s3cret-pw"


@pytest.fixture(scope="module")
def password_role(postgres: Any) -> str:
    """A role that must give its password (scram) on the server's socket."""
    folder = Path(postgres.pgdata)
    hba = folder / "pg_hba.conf"
    rule = f"local all {USER} scram-sha-256\n"
    if rule not in hba.read_text():
        hba.write_text(rule + hba.read_text())
    with psycopg.connect(postgres.get_uri(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (USER,)).fetchone():
            conn.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute("SELECT pg_reload_conf()")
    return USER


@pytest.fixture
def owned_database(postgres: Any, password_role: str, database_url_factory: Any) -> str:
    """A new database the password role owns; its name."""
    name = psycopg.conninfo.conninfo_to_dict(database_url_factory())["dbname"]
    with psycopg.connect(postgres.get_uri(), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} OWNER TO {password_role}")
    return name


def url(database: str, socket_dir: Path | str, password: str = PASSWORD) -> str:
    return f"postgresql://{USER}:{password}@/{database}?host={socket_dir}"


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_worker(home: Path, procs: list[subprocess.Popen[bytes]], database_url: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "run.log"
    procs.append(
        subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"],
            env=cli_env(home, INVOICE_WORKER_DATABASE_URL=database_url),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("wb"),
        )
    )
    return log_path


def wait_for(log_path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while text not in (found := log_path.read_text(errors="replace")):
        assert proc.poll() is None, found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def test_the_worker_connects_migrates_and_processes_a_file_on_postgresql(
    tmp_path: Path, postgres: Any, owned_database: str, started: list[Any]
):
    # Given a worker started on a PostgreSQL database that takes a password
    home = tmp_path / "home"
    database_url = url(owned_database, postgres.pgdata)
    log_path = run_worker(home, started, database_url)
    text = wait_for(log_path, "watcher.started", started[0])
    # Then it migrated the empty database
    assert "state.migrated backend=postgresql migrations=" in text
    # And a dropped file is processed, its invoices in PostgreSQL, not in var/state.db
    settings = load(env={}, home=home)
    drop(settings, "march.csv", invoice_csv([invoice_row(merchant_reference="PG-1")]))
    deadline = time.monotonic() + 60
    with psycopg.connect(database_url, autocommit=True) as conn:
        while not conn.execute("SELECT 1 FROM files WHERE state = 'processed'").fetchone():
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        refs = conn.execute("SELECT merchant_reference FROM invoices").fetchall()
    assert refs == [("PG-1",)]
    assert not (home / "var" / "state.db").exists()
    # And the password is in no line it logged
    assert PASSWORD not in log_path.read_text(errors="replace")


def test_a_database_not_up_yet_is_waited_for_and_logged_without_its_password(
    tmp_path: Path, postgres: Any, owned_database: str, started: list[Any]
):
    # Given a worker started while nothing listens where its database_url points
    socket_dir = tmp_path / "socket"
    socket_dir.mkdir()
    home = tmp_path / "home"
    log_path = run_worker(home, started, url(owned_database, socket_dir))
    # Then it says so, and tries again (twice at least, with backoff)
    wait_for(log_path, "retry_in=1.0", started[0])
    text = log_path.read_text(errors="replace")
    assert "state.database_unreachable" in text
    assert f'url="postgresql://{USER}:***@/{owned_database}?' in text
    assert "No such file or directory" in text
    # When the database comes up there (its socket appears)
    (socket_dir / ".s.PGSQL.5432").symlink_to(Path(postgres.pgdata) / ".s.PGSQL.5432")
    # Then the worker starts, the database migrated, and never wrote the password
    text = wait_for(log_path, "watcher.started", started[0])
    assert "state.migrated" in text
    assert PASSWORD not in text


def test_wrong_credentials_stop_the_worker_at_start_with_a_message_not_the_password(
    tmp_path: Path, postgres: Any, owned_database: str
):
    # Given a database_url with a wrong password
    wrong = "Wr0ng-pa55word"
    home = tmp_path / "home"
    home.mkdir()
    result = cli(
        "run",
        home=home,
        timeout=60,
        INVOICE_WORKER_DATABASE_URL=url(owned_database, postgres.pgdata, password=wrong),
    )
    # Then the worker exits at once, saying why, with neither password in what it wrote
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "refused the connection" in output
    assert "password authentication failed" in output
    assert f"postgresql://{USER}:***@" in output
    assert wrong not in output and PASSWORD not in output
    assert "database_unreachable" not in output


def test_a_database_url_that_is_not_postgresql_is_a_configuration_error():
    with pytest.raises(ConfigError, match="database_url"):
        load(env={"INVOICE_WORKER_DATABASE_URL": "mysql://u:p@h/db"})
    assert load(env={"INVOICE_WORKER_DATABASE_URL": "postgresql://u@h/db"}).database_url
