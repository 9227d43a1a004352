"""The one place that reads configuration: ``invoice-worker.toml`` plus the environment.

Every other module receives a :class:`Settings` as an argument.
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from worker.errors import ConfigError

ENV_PREFIX = "INVOICE_WORKER_"
OBSERVERS = ("auto", "native", "polling")


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Field comments give the defaults' reasons."""

    home: Path = Path(".")
    #: No URL means an embedded redis-server under ``var/``.
    redis_url: str | None = None
    #: No URL means SQLite in ``var/state.db``; ``postgresql://user:password@host/db``
    #: puts the state in PostgreSQL, which any number of hosts may share.
    database_url: str | None = None
    #: No URL means emails are written as ``.eml`` files to ``mail/``.
    smtp_url: str | None = None
    mail_from: str = "invoice-worker@localhost"
    admin_emails: tuple[str, ...] = ("admin@localhost",)
    payment_link_base: str = "https://pay.example.com/pay/"
    settle_seconds: float = 1.0
    done_marker: bool = False
    observer: str = "auto"
    #: Watch subfolders of inbox/ too.
    recursive: bool = False
    require_approval: bool = False
    max_error_rate: float = 1.0
    default_account: str | None = None
    accounts: Mapping[str, str] = field(default_factory=dict)
    merchant_webhook_url: str | None = None
    merchant_webhook_secret: str | None = None
    #: Encoding tried when a file has no BOM and is not UTF-8 (e.g. ``cp1252``).
    encoding: str | None = None
    #: Currencies allowed; empty means every ISO 4217 code.
    currencies: tuple[str, ...] = ()
    #: Rows per chunk: bounds memory and the length of one transaction. 50,000 rows
    #: peak 90 MiB below 100,000 on a 1M-row file, at about the same speed (README,
    #: "Performance").
    chunk_rows: int = 50_000
    #: Seconds between reconciliation scans of inbox/ and of unfinished files.
    scan_seconds: float = 2.0
    #: Seconds a job holds a file before another run may take it over.
    lease_seconds: float = 60.0
    #: This host's name in lease owners; unset, the system's. A lease of a dead process
    #: of this host is taken over at once, any other's once its heartbeat stops: hosts
    #: that share a database need distinct names (containers may all be "localhost").
    host_name: str | None = None
    worker_threads: int = 4
    #: Processes that run jobs, each with ``worker_threads`` threads; 0 means one a core
    #: (up to 4). A job holds its interpreter's lock, so it is processes that use cores.
    worker_processes: int = 0
    #: Customer emails per second (0 = unpaced), over one reused connection.
    mail_rate: float = 50.0
    #: A customer email a server keeps deferring (4xx) is failed and reported after
    #: this many hours; a server that is down is waited for without limit.
    mail_retry_hours: float = 48.0
    #: The name customers see as the sender of their invoice emails.
    merchant_name: str = "invoice-worker"
    log_format: str = "text"
    #: The four folders the ERP sees may live elsewhere (a share, a mount): absolute, or
    #: relative to the home. ``var/`` and ``mail/`` always stay under the home.
    inbox_dir: str | None = None
    outbox_dir: str | None = None
    archive_dir: str | None = None
    rejected_dir: str | None = None
    #: A remote SFTP folder polled as an inbox: ``sftp://user[:password]@host[:port]/path``.
    sftp_url: str | None = None
    sftp_poll_seconds: float = 5.0
    #: A remote folder the fetched originals move to; unset, they are removed.
    sftp_archive: str | None = None
    #: A remote folder every result file is also uploaded to.
    sftp_outbox: str | None = None
    #: Required with ``sftp_url``: the server's host key is checked, never trusted blindly.
    sftp_known_hosts: str | None = None
    sftp_key_file: str | None = None
    #: The zone a spreadsheet's date-time cells (which carry no offset) are taken in.
    spreadsheet_timezone: str = "UTC"
    #: Unset, no metrics; set, ``/metrics`` and ``/health`` on this port (worker
    #: processes started by ``run`` on the next ones), on ``metrics_host``.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: ``outbox/invoice-status-*.csv`` for ERPs that take no webhook: the invoices whose
    #: status changed, at most one file every ``status_file_seconds``.
    status_files: bool = False
    status_file_seconds: float = 60.0

    def _folder(self, configured: str | None, default: str) -> Path:
        return self.home / Path(configured).expanduser() if configured else self.home / default

    @property
    def inbox(self) -> Path:
        return self._folder(self.inbox_dir, "inbox")

    @property
    def outbox(self) -> Path:
        return self._folder(self.outbox_dir, "outbox")

    @property
    def archive(self) -> Path:
        return self._folder(self.archive_dir, "archive")

    @property
    def rejected(self) -> Path:
        return self._folder(self.rejected_dir, "rejected")

    @property
    def mail(self) -> Path:
        return self.home / "mail"

    @property
    def var(self) -> Path:
        return self.home / "var"

    @property
    def state_db(self) -> Path:
        return self.var / "state.db"

    @property
    def work(self) -> Path:
        """Validated chunks waiting to be processed, one folder per file."""
        return self.var / "work"

    @property
    def claimed(self) -> Path:
        """Where a claimed file waits: inside inbox/ so the claim is one atomic rename."""
        return self.inbox / ".claimed"

    def folders(self) -> list[Path]:
        return [self.inbox, self.outbox, self.archive, self.rejected, self.mail, self.var]

    def ensure_folders(self) -> None:
        for folder in self.folders():
            folder.mkdir(parents=True, exist_ok=True)
        # The state and the rendered emails hold customer data: owner only.
        for private in (self.var, self.mail):
            private.chmod(0o700)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(item).strip() for item in value if str(item).strip())


def _as_accounts(key: str, value: Any) -> dict[str, str]:
    pairs: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = []
        for item in _as_list(value):
            account, sep, currency = item.rpartition(":")
            if not sep or not account:
                raise ConfigError(f"{key}: expected ID:CUR pairs, got {item!r}")
            pairs.append((account, currency))
    return {str(a).strip(): str(c).strip().upper() for a, c in pairs}


def _coerce(key: str, value: Any) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = kinds[key]
    try:
        if key == "home":
            return Path(value)
        if key == "accounts":
            return _as_accounts(key, value)
        if "tuple" in kind:
            return _as_list(value)
        if kind == "bool":
            return _as_bool(key, value)
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(value)
        if kind == "int | None":
            return None if value is None or str(value).strip() == "" else int(value)
        if value is None or str(value).strip() == "":
            return None
        return str(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def load(
    env: Mapping[str, str] | None = None, home: Path | None = None, **overrides: Any
) -> Settings:
    """Read ``invoice-worker.toml`` then ``INVOICE_WORKER_*`` variables, then ``overrides``."""
    env = os.environ if env is None else env
    names = {f.name for f in fields(Settings)}
    home = Path(home or env.get(ENV_PREFIX + "HOME") or ".")
    config_path = Path(env.get(ENV_PREFIX + "CONFIG") or home / "invoice-worker.toml")
    values: dict[str, Any] = {}
    if config_path.exists():
        try:
            raw = tomllib.loads(config_path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: {exc}") from exc
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"{config_path}: unknown keys {', '.join(sorted(unknown))}")
        values.update(raw)
    if "REDIS_URL" in env:
        values["redis_url"] = env["REDIS_URL"]
    for name in names:
        if ENV_PREFIX + name.upper() in env:
            values[name] = env[ENV_PREFIX + name.upper()]
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["home"] = values.get("home", home)
    settings = Settings(**{k: _coerce(k, v) for k, v in values.items()})
    return _checked(settings)


def _checked(settings: Settings) -> Settings:
    home = settings.home.expanduser().resolve()
    if settings.observer not in OBSERVERS:
        raise ConfigError(f"observer: expected one of {', '.join(OBSERVERS)}")
    if not 0 <= settings.max_error_rate <= 1:
        raise ConfigError("max_error_rate: expected a fraction from 0 to 1")
    if settings.settle_seconds < 0:
        raise ConfigError("settle_seconds: expected a number of seconds >= 0")
    if settings.mail_rate < 0 or settings.mail_retry_hours < 0:
        raise ConfigError("mail_rate and mail_retry_hours: expected numbers >= 0")
    if settings.worker_processes < 0 or settings.worker_threads < 1:
        raise ConfigError("worker_processes: expected >= 0; worker_threads: expected >= 1")
    if settings.chunk_rows < 1:
        raise ConfigError("chunk_rows: expected a positive number of rows")
    if settings.accounts and settings.default_account not in (None, *settings.accounts):
        raise ConfigError("default_account: not one of accounts")
    if settings.merchant_webhook_url:
        if not settings.merchant_webhook_url.lower().startswith(("http://", "https://")):
            raise ConfigError("merchant_webhook_url: expected an http:// or https:// URL")
        if not settings.merchant_webhook_secret:
            # The merchant is promised signed notifications: never send one unsigned.
            raise ConfigError("merchant_webhook_secret: required with merchant_webhook_url")
    if settings.database_url:
        scheme, _, _ = settings.database_url.partition("://")
        if scheme.lower() not in ("postgresql", "postgres"):
            raise ConfigError("database_url: expected postgresql://user:password@host:port/db")
    if settings.sftp_url:
        if not settings.sftp_url.lower().startswith("sftp://") or not (
            urllib.parse.urlsplit(settings.sftp_url).hostname
        ):
            raise ConfigError("sftp_url: expected sftp://user@host[:port]/path")
        if not settings.sftp_known_hosts:
            # Without the server's key, anyone on the path could serve us invoices.
            raise ConfigError("sftp_known_hosts: required with sftp_url")
    try:
        zoneinfo.ZoneInfo(settings.spreadsheet_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"spreadsheet_timezone: unknown time zone {exc}") from None
    if settings.metrics_port is not None and not 0 < settings.metrics_port < 65536:
        raise ConfigError("metrics_port: expected a TCP port from 1 to 65535")
    if settings.sftp_poll_seconds <= 0:
        raise ConfigError("sftp_poll_seconds: expected a number of seconds > 0")
    for address in (settings.mail_from, *settings.admin_emails):
        # RFC 5321's limits; past them Python's email folds a To line with an empty line,
        # which ends the headers there.
        if len(address.rpartition("@")[0] or address) > 64 or len(address) > 254:
            raise ConfigError(
                f"mail_from and admin_emails: longer than RFC 5321 allows: {address!r}"
            )
    if settings.status_file_seconds < 1:
        # Status files are named by the second: two in one second would share a name.
        raise ConfigError("status_file_seconds: expected a number of seconds >= 1")
    return replace(settings, home=home)
