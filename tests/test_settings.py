"""Configuration: the TOML file, then INVOICE_WORKER_* variables."""

from __future__ import annotations

import pytest

from worker.errors import ConfigError
from worker.settings import load


def test_defaults_use_the_home_folder(tmp_path):
    s = load(env={}, home=tmp_path)
    assert s.inbox == tmp_path / "inbox"
    assert s.state_db == tmp_path / "var" / "state.db"
    assert (s.settle_seconds, s.max_error_rate, s.observer) == (1.0, 1.0, "auto")
    assert s.redis_url is None and s.smtp_url is None


def test_environment_overrides_the_file(tmp_path):
    (tmp_path / "invoice-worker.toml").write_text(
        'settle_seconds = 3\nadmin_emails = ["a@x.org"]\n[accounts]\nACC-1 = "rwf"\n'
    )
    s = load(env={"INVOICE_WORKER_SETTLE_SECONDS": "0.5"}, home=tmp_path)
    assert s.settle_seconds == 0.5
    assert s.admin_emails == ("a@x.org",)
    assert dict(s.accounts) == {"ACC-1": "RWF"}


def test_lists_and_accounts_from_the_environment(tmp_path):
    s = load(
        env={
            "INVOICE_WORKER_ADMIN_EMAILS": "a@x.org, b@y.org",
            "INVOICE_WORKER_ACCOUNTS": "ACC-1:RWF,ACC-2:USD",
            "INVOICE_WORKER_REQUIRE_APPROVAL": "yes",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        },
        home=tmp_path,
    )
    assert s.admin_emails == ("a@x.org", "b@y.org")
    assert dict(s.accounts) == {"ACC-1": "RWF", "ACC-2": "USD"}
    assert s.require_approval is True
    assert s.redis_url == "redis://127.0.0.1:6379/0"


def test_the_specific_redis_variable_wins_over_redis_url(tmp_path):
    env = {"REDIS_URL": "redis://a", "INVOICE_WORKER_REDIS_URL": "redis://b"}
    assert load(env=env, home=tmp_path).redis_url == "redis://b"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"INVOICE_WORKER_MAX_ERROR_RATE": "1.5"}, "max_error_rate"),
        ({"INVOICE_WORKER_OBSERVER": "magic"}, "observer"),
        ({"INVOICE_WORKER_ACCOUNTS": "ACC-1"}, "ID:CUR"),
        ({"INVOICE_WORKER_DONE_MARKER": "maybe"}, "true or false"),
        ({"INVOICE_WORKER_SETTLE_SECONDS": "soon"}, "settle_seconds"),
        ({"INVOICE_WORKER_ADMIN_EMAILS": "ops@example.org," + "a" * 65 + "@x.rw"}, "admin_emails"),
        ({"INVOICE_WORKER_MAIL_FROM": "b" * 65 + "@x.rw"}, "mail_from"),
    ],
)
def test_bad_values_are_clear_errors(tmp_path, env, words):
    with pytest.raises(ConfigError, match=words):
        load(env=env, home=tmp_path)


def test_unknown_keys_in_the_file_are_errors(tmp_path):
    (tmp_path / "invoice-worker.toml").write_text("setle_seconds = 1\n")
    with pytest.raises(ConfigError, match="setle_seconds"):
        load(env={}, home=tmp_path)


@pytest.mark.parametrize(
    ("url", "known_hosts"),
    [("ftp://erp@host/in", "kh"), ("sftp:///in", "kh"), ("sftp://erp@host/in", None)],
)
def test_an_sftp_inbox_needs_a_host_and_the_servers_known_key(tmp_path, url, known_hosts):
    with pytest.raises(ConfigError, match="sftp"):
        load(env={}, home=tmp_path, sftp_url=url, sftp_known_hosts=known_hosts)
