"""A real SFTP server (asyncssh) on 127.0.0.1, run as a process of its own so a test can
kill it with SIGKILL in the middle of a download, and start it again on the same port.

Run as a script it serves ``--root`` (chrooted); imported, :class:`SftpServer` starts
and stops that process and holds its keys, its known_hosts line and its folders.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncssh

PASSWORD = "s3cret-pass"
USER = "erp"


class SftpServer:
    """The server process, with its keys in ``base``, serving ``base/root``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.inbox = self.root / "inbox"
        self.inbox.mkdir(parents=True)
        self.host_key = base / "host_key"
        self.client_key = base / "client_key"
        self.known_hosts = base / "known_hosts"
        #: While this file exists, the server refuses to remove or rename files.
        self.hold = base / "hold_removes"
        self.port = 0
        self.read_delay = 0.0
        self.process: subprocess.Popen[bytes] | None = None
        host = asyncssh.generate_private_key("ssh-ed25519")
        host.write_private_key(self.host_key)
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(self.client_key)
        client.write_public_key(base / "authorized_keys")

    def start(self, read_delay: float | None = None) -> SftpServer:
        if read_delay is not None:
            self.read_delay = read_delay
        port_file = self.base / "port"
        port_file.unlink(missing_ok=True)
        log = (self.base / "server.log").open("ab")
        args = ["--base", str(self.base), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [sys.executable, __file__, *args, "--read-delay", str(self.read_delay)],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((self.base / "server.log").read_text())
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        if not self.known_hosts.exists():
            key = asyncssh.read_private_key(self.host_key).export_public_key().decode()
            self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key}")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def url(self, password: bool = False, path: str = "/inbox") -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"sftp://{USER}{secret}@127.0.0.1:{self.port}{path}"

    def settings(self, **extra: str) -> dict[str, str]:
        """The worker's keys (as environment variables) to pull from this server."""
        env = {
            "INVOICE_WORKER_SFTP_URL": self.url(),
            "INVOICE_WORKER_SFTP_KNOWN_HOSTS": str(self.known_hosts),
            "INVOICE_WORKER_SFTP_KEY_FILE": str(self.client_key),
            "INVOICE_WORKER_SFTP_POLL_SECONDS": "0.2",
        }
        env.update({f"INVOICE_WORKER_{k.upper()}": v for k, v in extra.items()})
        return env


# -- the server process ---------------------------------------------------------------


def serve(base: Path, port: int, read_delay: float) -> None:
    hold = base / "hold_removes"
    reading = asyncio.Lock()

    class Folder(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel) -> None:
            super().__init__(chan, chroot=str(base / "root").encode())

        async def read(self, file_obj: object, offset: int, size: int) -> bytes:
            # A slow disk: one read at a time, each taking read_delay.
            if read_delay:
                async with reading:
                    await asyncio.sleep(read_delay)
            return super().read(file_obj, offset, size)  # type: ignore[return-value]

        def remove(self, path: bytes) -> None:
            if hold.exists():
                raise asyncssh.SFTPPermissionDenied("removal held by the test")
            super().remove(path)

        def rename(self, oldpath: bytes, newpath: bytes) -> None:
            if hold.exists():
                raise asyncssh.SFTPPermissionDenied("rename held by the test")
            super().rename(oldpath, newpath)

    class Login(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return username == USER and password == PASSWORD

    async def main() -> None:
        acceptor = await asyncssh.listen(
            "127.0.0.1",
            port,
            server_host_keys=[str(base / "host_key")],
            authorized_client_keys=str(base / "authorized_keys"),
            server_factory=Login,
            sftp_factory=Folder,
            allow_scp=False,
            reuse_address=True,
        )
        tmp = base / "port.tmp"
        tmp.write_text(str(acceptor.get_port()))
        os.replace(tmp, base / "port")
        await acceptor.wait_closed()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--read-delay", type=float, default=0.0)
    args = parser.parse_args()
    serve(args.base, args.port, args.read_delay)
