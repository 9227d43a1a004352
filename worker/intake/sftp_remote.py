"""The remote side of SFTP pull and push: the URL, the connection, listings and copies.

Only the SSH library's calls live here; what is fetched when, and what is recorded,
is :mod:`worker.intake.sftp`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import unquote, urlsplit

import asyncssh
from asyncssh.constants import FILEXFER_TYPE_REGULAR

from worker import log
from worker.errors import ConfigError
from worker.intake.names import safe_stem
from worker.settings import Settings

#: Seconds to wait for the server to answer and for the login to finish.
CONNECT_TIMEOUT = 30.0
#: A connection whose server stops answering is noticed within about a minute, even
#: in the middle of a download, and dropped (then retried) rather than hanging.
KEEPALIVE_SECONDS = 15.0
KEEPALIVE_COUNT = 4
BLOCK = 1 << 20

#: What a server that is down, refuses, or drops the connection raises.
UNREACHABLE = (OSError, asyncssh.Error, TimeoutError)
#: The SFTP errors that mean the connection itself is gone, not one file's trouble.
CONNECTION_GONE = (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)


@dataclass(frozen=True)
class Remote:
    """Where the remote inbox is, from ``sftp://user[:password]@host[:port]/path``."""

    host: str
    port: int
    username: str | None
    password: str | None
    #: Absolute, or relative to the login folder when the URL's path starts ``/~/``.
    path: str
    #: The URL fit for a log line.
    shown: str


@dataclass(frozen=True)
class Entry:
    """A regular file in the remote folder, as the server reports it."""

    name: str
    path: str
    size: int
    mtime: int


def parse_url(url: str) -> Remote:
    parts = urlsplit(url)
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise ConfigError(f"sftp_url: {exc}") from None
    if parts.scheme.lower() != "sftp" or not parts.hostname:
        raise ConfigError("sftp_url: expected sftp://user@host[:port]/path")
    path = unquote(parts.path) or "/"
    if path == "/~" or path.startswith("/~/"):
        path = path[3:] or "."
    return Remote(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=path,
        shown=log.redact_url(url) or "",
    )


def _local(settings: Settings, configured: str) -> str:
    path = Path(configured).expanduser()
    return str(path if path.is_absolute() else settings.home / path)


async def connect(settings: Settings, remote: Remote) -> asyncssh.SSHClientConnection:
    """A connection whose host key is checked against ``sftp_known_hosts``, never trusted
    on first use; the login is the key file's, or the URL's password."""
    if not settings.sftp_known_hosts:
        raise ConfigError("sftp_known_hosts: required with sftp_url")
    key = settings.sftp_key_file
    return await asyncssh.connect(
        remote.host,
        remote.port,
        username=remote.username,
        password=remote.password,
        known_hosts=_local(settings, settings.sftp_known_hosts),
        client_keys=[_local(settings, key)] if key else (),
        # Not this user's agent or ~/.ssh keys: only what the configuration names.
        agent_path=None,
        ignore_encrypted=True,
        connect_timeout=CONNECT_TIMEOUT,
        login_timeout=CONNECT_TIMEOUT,
        keepalive_interval=KEEPALIVE_SECONDS,
        keepalive_count_max=KEEPALIVE_COUNT,
    )


async def listing(sftp: asyncssh.SFTPClient, folder: str) -> dict[str, Entry]:
    """The regular files of ``folder`` by remote path (directories and links left out)."""
    found: dict[str, Entry] = {}
    for item in await sftp.readdir(folder):
        attrs, name = item.attrs, str(item.filename)
        if attrs.type != FILEXFER_TYPE_REGULAR or attrs.size is None:
            continue
        path = posixpath.join(folder, name)
        found[path] = Entry(name=name, path=path, size=attrs.size, mtime=int(attrs.mtime or 0))
    return found


def local_name(remote_name: str) -> str:
    """The name a fetched file is given here: a remote name is any bytes the server sent."""
    readable = remote_name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return safe_stem(readable)


async def download(sftp: asyncssh.SFTPClient, path: str, target: Path) -> tuple[str, int]:
    """Copy the remote file to the new local file ``target``, fsynced; (sha256, size)."""
    digest, size = hashlib.sha256(), 0
    async with sftp.open(path, "rb") as source:
        with open(target, "xb") as out:
            while block := cast(bytes, await source.read(BLOCK)):
                out.write(block)
                digest.update(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
    return digest.hexdigest(), size


def rename_durably(source: Path, target: Path) -> None:
    """Rename, and fsync the folder: the name is on disk before anything refers to it."""
    os.rename(source, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def attributes(sftp: asyncssh.SFTPClient, path: str) -> tuple[int, int] | None:
    """(size, mtime) of a remote file now, or None if it is gone."""
    try:
        attrs = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return None
    return int(attrs.size or 0), int(attrs.mtime or 0)


async def free_path(sftp: asyncssh.SFTPClient, folder: str, name: str) -> str:
    """``folder/name``, or ``folder/<stem>.<n><ext>`` for the first n not taken."""
    candidate = posixpath.join(folder, name)
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    n = 0
    while await sftp.exists(candidate):
        n += 1
        candidate = posixpath.join(folder, f"{stem}.{n}" + (f".{ext}" if ext else ""))
    return candidate


async def archive(sftp: asyncssh.SFTPClient, entry: Entry, folder: str) -> str:
    """Move a fetched file into the remote archive folder, under a free name; that name."""
    await sftp.makedirs(folder, exist_ok=True)
    target = await free_path(sftp, folder, entry.name)
    await sftp.rename(entry.path, target)
    return target


async def close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    with contextlib.suppress(*UNREACHABLE):
        await asyncio.wait_for(conn.wait_closed(), 5)


async def replace(sftp: asyncssh.SFTPClient, source: str, target: str) -> None:
    """Rename over ``target`` in one step where the server can (OpenSSH's posix-rename),
    else remove it first (a moment without it, never a half file)."""
    try:
        await sftp.posix_rename(source, target)
    except asyncssh.SFTPOpUnsupported:
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await sftp.remove(target)
        await sftp.rename(source, target)
