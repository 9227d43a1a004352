"""``invoice-worker retry``: a file rejected as a whole, taken again, run as the real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import cli, cli_env, invoice_csv, invoice_row, read_results

#: One good row, one naming an account the configuration does not have (yet).
ACCOUNTS = {"INVOICE_WORKER_ACCOUNTS": "ACC-1:USD", "INVOICE_WORKER_DEFAULT_ACCOUNT": "ACC-1"}
FIXED = {**ACCOUNTS, "INVOICE_WORKER_ACCOUNTS": "ACC-1:USD,ACC-9:USD"}
STRICT = {"INVOICE_WORKER_MAX_ERROR_RATE": "0.2"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path


def status(home: Path) -> dict[int, dict[str, object]]:
    return {r["id"]: r for r in json.loads(cli("status", "--json", home=home).stdout)}


def rejected_for_an_unknown_account(home: Path) -> None:
    rows = [invoice_row(1), invoice_row(2, payment_account="ACC-9")]
    (home / "inbox" / "march.csv").write_text(invoice_csv(rows))
    assert cli("run", "--once", home=home, **ACCOUNTS, **STRICT).returncode == 0
    assert status(home)[1]["error_code"] == "TOO_MANY_ERRORS"


def test_a_file_rejected_for_an_unknown_account_is_archived_once_the_account_is_added(home):
    # Given a file rejected because one of its two rows names an unknown account
    rejected_for_an_unknown_account(home)
    assert (home / "rejected" / "march.csv").exists()
    earlier = sorted(p.name for p in (home / "outbox").iterdir())
    # When the account is added and the file is tried again
    retried = cli("retry", "1", home=home, **FIXED, **STRICT)
    assert retried.returncode == 0, retried.stderr
    assert "File 1 is taken again" in retried.stdout
    assert cli("run", "--once", home=home, **FIXED, **STRICT).returncode == 0
    # Then the same file id is processed, its original archived, its new results named
    # apart from the earlier ones (which are left as they were)
    row = status(home)[1]
    assert (row["state"], row["created"], row["error_code"]) == ("processed", 2, None)
    assert (home / "archive" / "march.csv").exists()
    assert not (home / "rejected" / "march.csv").exists()
    assert sorted(p.name for p in (home / "outbox").iterdir()) == sorted(
        [*earlier, "march.csv.retry1.results.csv"]
    )
    results = read_results(home / "outbox" / "march.csv.retry1.results.csv")
    assert [r["status"] for r in results] == ["CREATED", "CREATED"]
    # And the administrators are told of the new run under keys of its own
    mails = sorted(p.name for p in (home / "mail").iterdir())
    assert any("processed-retry1" in name for name in mails), mails


def test_a_file_rejected_for_too_many_errors_is_processed_with_a_higher_max_error_rate(home):
    # Given a file rejected for TOO_MANY_ERRORS (one row of two has no amount)
    rows = [invoice_row(1), invoice_row(2, amount="")]
    (home / "inbox" / "april.csv").write_text(invoice_csv(rows))
    assert cli("run", "--once", home=home, **STRICT).returncode == 0
    assert status(home)[1]["error_code"] == "TOO_MANY_ERRORS"
    # When max_error_rate is raised and the file is tried again, with the worker running
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"],
        env=cli_env(home),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert cli("retry", "1", home=home).returncode == 0
        assert wait_for_state(home, 1, "processed")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    # Then it is processed: the valid row created, the other rejected in its results
    results = read_results(home / "outbox" / "april.csv.retry1.results.csv")
    assert [r["status"] for r in results] == ["CREATED", "REJECTED"]
    assert (home / "archive" / "april.csv").exists()


def wait_for_state(home: Path, file_id: int, state: str, timeout: float = 90) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(home).get(file_id, {}).get("state") == state:
            return True
        time.sleep(0.2)
    return False


def test_retrying_twice_says_the_file_is_under_way_then_that_it_is_not_rejected(home):
    # Given a rejected file tried again
    rejected_for_an_unknown_account(home)
    assert cli("retry", "1", home=home).returncode == 0
    # When it is tried again before a worker took it
    second = cli("retry", "1", home=home)
    # Then the second exits 1, saying it is under way, and nothing was moved twice
    assert second.returncode == 1
    assert "received, not rejected (it is being tried again already)" in second.stderr
    [claimed] = list((home / "inbox" / ".claimed").glob("*/march.csv"))
    assert not (home / "rejected" / "march.csv").exists()
    # And once it is processed, a third exits 1 too: it is no longer rejected
    assert cli("run", "--once", home=home, **FIXED).returncode == 0
    assert not claimed.exists()
    third = cli("retry", "1", home=home)
    assert third.returncode == 1
    assert "file 1 is processed, not rejected" in third.stderr
    assert status(home)[1]["state"] == "processed"


def test_an_unknown_id_a_duplicate_and_an_archived_file_are_not_retried(home):
    # Given an archived file and a later duplicate of it
    content = invoice_csv([invoice_row(1)])
    (home / "inbox" / "a.csv").write_text(content)
    assert cli("run", "--once", home=home).returncode == 0
    (home / "inbox" / "b.csv").write_text(content)
    assert cli("run", "--once", home=home).returncode == 0
    assert status(home)[2]["error_code"] == "DUPLICATE_FILE"
    # When each is tried again, and an id that names no file
    archived, duplicate, unknown = (cli("retry", n, home=home) for n in ("1", "2", "99"))
    # Then each exits 1 with a message saying why
    assert archived.returncode == duplicate.returncode == unknown.returncode == 1
    assert "file 1 is processed, not rejected" in archived.stderr
    assert "rejected as DUPLICATE_FILE" in duplicate.stderr
    assert "no file with id 99" in unknown.stderr
    assert (home / "rejected" / "b.csv").exists()


def test_a_retry_killed_after_it_was_recorded_is_finished_by_the_next_run(home):
    # Given a retry recorded, and its process killed (SIGKILL) before it moved the original
    rejected_for_an_unknown_account(home)
    script = textwrap.dedent(
        """
        import os, secrets, signal
        from worker import settings, state
        from worker.state import leases, retries
        s = settings.load()
        target = s.claimed / secrets.token_hex(8) / "march.csv"
        retries.request(state.connect(s), 1, str(target), leases.lease_owner(), 300)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], env=cli_env(home), cwd=home)
    assert killed.returncode == -signal.SIGKILL
    assert (home / "rejected" / "march.csv").exists()
    assert status(home)[1]["state"] == "received"
    # When the worker starts again (the dead process's lease is taken over at once)
    assert cli("run", "--once", home=home, **FIXED).returncode == 0
    # Then the move is finished and the file processed, once
    row = status(home)[1]
    assert (row["state"], row["created"]) == ("processed", 2)
    assert not (home / "rejected" / "march.csv").exists()
    assert (home / "archive" / "march.csv").exists()
    assert len(status(home)) == 1
    assert not list((home / "inbox" / ".claimed").glob("*/*"))
    assert os.listdir(home / "inbox") == [".claimed"]


def test_a_file_rejected_again_after_a_retry_keeps_every_result_and_can_be_retried_again(home):
    # Given a rejected file tried again before its configuration was fixed
    rejected_for_an_unknown_account(home)
    first = sorted(p.name for p in (home / "outbox").iterdir())
    assert cli("retry", "1", home=home).returncode == 0
    assert cli("run", "--once", home=home, **ACCOUNTS, **STRICT).returncode == 0
    # Then it is rejected again, its original back in rejected/, its new results beside
    # the first ones (which are as they were)
    row = status(home)[1]
    assert (row["state"], row["error_code"]) == ("rejected", "TOO_MANY_ERRORS")
    assert (home / "rejected" / "march.csv").exists()
    outbox = sorted(p.name for p in (home / "outbox").iterdir())
    assert outbox == sorted([*first, "march.csv.retry1.error.json", "march.csv.retry1.results.csv"])
    # And tried a second time with the account added, it is processed, named apart again
    assert cli("retry", "1", home=home).returncode == 0
    assert cli("run", "--once", home=home, **FIXED, **STRICT).returncode == 0
    assert status(home)[1]["state"] == "processed"
    assert (home / "outbox" / "march.csv.retry2.results.csv").exists()
    assert len(list((home / "outbox").iterdir())) == len(outbox) + 1
    assert len(status(home)) == 1
