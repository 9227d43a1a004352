"""Which filesystem holds a path: SQLite refuses network mounts, the watcher polls them."""

from __future__ import annotations

import os
from pathlib import Path

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "9p", "afs", "ceph")


def filesystem_type(path: Path, mounts_text: str | None = None) -> str | None:
    """The mount type holding ``path`` (from /proc/mounts), or None if unknown."""
    try:
        text = Path("/proc/mounts").read_text() if mounts_text is None else mounts_text
    except OSError:
        return None
    target = os.path.realpath(path)
    best, kind = "", None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, parts[2]
    return kind


def is_network_filesystem(path: Path, mounts_text: str | None = None) -> bool:
    kind = filesystem_type(path, mounts_text) or ""
    return kind in NETWORK_FILESYSTEMS or kind.startswith("fuse")
