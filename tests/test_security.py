"""What only the worker's user may read, and where its state may not live."""

from __future__ import annotations

import stat

import pytest
from helpers import cli, invoice_csv, invoice_row

from worker.state.mounts import is_network_filesystem

MOUNTS = """\
/dev/vda / ext4 rw 0 0
server:/export /mnt/erp nfs4 rw 0 0
erp@host:/out /mnt/sftp fuse.sshfs rw 0 0
//nas/share /mnt/smb cifs rw 0 0
"""


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_database_and_mail_are_readable_by_the_owner_only(tmp_path):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.csv").write_text(invoice_csv([invoice_row(1)]))
    assert cli("run", "--once", home=tmp_path).returncode == 0
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "mail") == 0o700
    assert mode(tmp_path / "var" / "state.db") & 0o077 == 0
    for eml in (tmp_path / "mail").glob("*.eml"):
        assert mode(eml) & 0o077 == 0


@pytest.mark.parametrize(
    ("path", "network"),
    [("/var/lib/iw", False), ("/mnt/erp/var", True), ("/mnt/sftp/inbox", True), ("/mnt/smb", True)],
)
def test_network_and_fuse_mounts_are_recognised(path, network):
    assert is_network_filesystem(path, MOUNTS) is network
