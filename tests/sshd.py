"""A real OpenSSH sshd on 127.0.0.1, sshfs mounts of its folders, and slow writers.

Keys and configuration live in a temporary folder; the server runs in the foreground
(``-D``) as a child of the test process, so it is stopped by its own pid and never
outlives the session. Logging in is by key only, as the current user.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
#: Where Debian's sshd insists on its privilege-separation directory.
PRIVSEP_DIR = Path("/run/sshd")
HOW_TO_GET_THEM = (
    "`make test-mounts` installs them when run as root (apt-get install openssh-server "
    "sshfs); in a container, FUSE also needs /dev/fuse (e.g. --device /dev/fuse "
    "--cap-add SYS_ADMIN)"
)


def missing_tools() -> list[str]:
    """What the mount tests need and this machine lacks."""
    missing = [
        tool
        for tool in ("sftp", "ssh-keygen", "sshfs", "fusermount3")
        if shutil.which(tool) is None
    ]
    if not os.access(SSHD, os.X_OK):
        missing.append(SSHD)
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        missing.append("/dev/fuse (readable and writable)")
    return missing


def require_tools() -> None:
    """Fail, never skip: a mount test that cannot run is a red result with its reason."""
    missing = missing_tools()
    if missing:
        pytest.fail(f"the mount tests need {', '.join(missing)}; {HOW_TO_GET_THEM}", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], bool], what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"{what} not reached after {timeout}s\n{tail}")


class Sshd:
    """One sshd on a free port of 127.0.0.1, serving SFTP (internal-sftp) and shells."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.user = getpass.getuser()
        self.host_key = folder / "host_ed25519"
        self.key = folder / "user_ed25519"
        self.known_hosts = folder / "known_hosts"
        self.config = folder / "sshd_config"
        self.log = folder / "sshd.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def _keys(self) -> None:
        for key in (self.host_key, self.key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                check=True,
                capture_output=True,
            )
        shutil.copy(self.key.with_suffix(".pub"), self.folder / "authorized_keys")

    def _configure(self) -> None:
        self.port = free_port()
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin yes",
                    # The keys sit in a temporary folder, not in a home with strict modes.
                    "StrictModes no",
                    "UsePAM no",
                    f"PidFile {self.folder / 'sshd.pid'}",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        key_type, key_text = self.host_key.with_suffix(".pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key_type} {key_text}\n")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"sshd exited with {self.process.returncode}:\n{self.log.read_text()}"
            )
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self, timeout: float = 30, attempts: int = 3) -> Sshd:
        self._keys()
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        for attempt in range(attempts):
            self._configure()
            self.process = subprocess.Popen(
                [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait(self._listening, "sshd listening", timeout, self.log)
                return self
            except AssertionError:
                # Another process may have taken the free port between the check and
                # the bind: try a new one.
                self.stop()
                if attempt == attempts - 1:
                    raise
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def client_options(self) -> list[str]:
        """Options that make ssh, sftp and sshfs trust only this server, with this key."""
        return [
            "-o",
            f"IdentityFile={self.key}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]

    def sftp(self, batch: str, limit_kbit: int | None = None) -> subprocess.Popen[bytes]:
        """OpenSSH's sftp client running the ``batch`` commands (``-b``); ``limit_kbit``
        caps its rate (``-l``, Kbit/s)."""
        batch_file = self.folder / f"batch-{time.monotonic_ns()}"
        batch_file.write_text(batch)
        args = ["sftp", "-q", "-b", str(batch_file), "-P", str(self.port)]
        args += ["-i", str(self.key), *self.client_options()]
        if limit_kbit is not None:
            args += ["-l", str(limit_kbit)]
        return subprocess.Popen(
            [*args, f"{self.user}@127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def mount(self, remote: Path, mountpoint: Path, timeout: float = 30) -> Mount:
        return Mount(self, remote, mountpoint).start(timeout)


def mounted(mountpoint: Path) -> bool:
    target = os.path.realpath(mountpoint)
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].replace("\\040", " ") == target:
            return parts[2].startswith("fuse")
    return False


class Mount:
    """``remote`` (a folder on the server) mounted with sshfs at ``mountpoint``, default
    options (its attribute cache included): the way an ERP host mounts a share."""

    def __init__(self, server: Sshd, remote: Path, mountpoint: Path) -> None:
        self.server, self.remote, self.path = server, remote, mountpoint
        self.log = server.folder / f"sshfs-{mountpoint.name}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> Mount:
        self.path.mkdir(parents=True, exist_ok=True)
        # -f keeps sshfs a child of this process, so it is stopped by its own pid.
        self.process = subprocess.Popen(
            [
                "sshfs",
                "-f",
                "-p",
                str(self.server.port),
                *self.server.client_options(),
                f"{self.server.user}@127.0.0.1:{self.remote}",
                str(self.path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"sshfs exited with {self.process.returncode}:\n{self.log.read_text()}"
                )
            return mounted(self.path)

        _wait(up, f"sshfs mounted at {self.path}", timeout, self.log)
        return self

    def unmount(self) -> None:
        if mounted(self.path):
            done = subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
            if done.returncode != 0:
                # Still busy (a test failed with a file open): detach it now, it goes
                # when the last user lets go.
                subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        if self.process is not None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None
        with contextlib.suppress(OSError):
            self.path.rmdir()


#: A writer that holds the file open from its first part to its last, pausing between
#: parts, as an ERP export or an upload does. It runs as a process of its own: the
#: worker must see it as another process.
_WRITER = """
import sys, time
source, target, parts, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
data = open(source, "rb").read()
step = -(-len(data) // parts)
with open(target, "wb") as fh:
    for i in range(parts):
        fh.write(data[i * step : (i + 1) * step])
        fh.flush()
        if i < parts - 1:
            time.sleep(pause)
"""


def slow_writer(source: Path, target: Path, parts: int, pause: float) -> subprocess.Popen[bytes]:
    """Copies ``source`` to ``target`` in ``parts`` writes, ``pause`` seconds apart."""
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(source), str(target), str(parts), str(pause)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
