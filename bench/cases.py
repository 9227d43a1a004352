"""The product, run the way users run it: ``invoice-worker`` processes on fresh home folders.

Every case makes its own home under the benchmark's scratch folder, puts the
input there by hard link (an instant "drop" that leaves the generated file in
place), and times whole processes with :mod:`bench.measure`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import measure

SETTLE_SECONDS = 0.25
#: Files this large are deleted as soon as their case is done (few inodes, most of the space).
LARGE_BYTES = 1 << 20
TRASH = ".trash"


def product_command(*args: str) -> list[str]:
    """``invoice-worker ARGS``: the console script beside this interpreter."""
    script = Path(sys.executable).with_name("invoice-worker")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "worker.cli", *args]


def product_env(
    home: Path, settle: float | None = SETTLE_SECONDS, **settings: str
) -> dict[str, str]:
    """The product's environment: only ``home``; ``settle`` None leaves the default."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("INVOICE_WORKER_", "REDIS_URL"))
    }
    env["INVOICE_WORKER_HOME"] = str(home)
    if settle is not None:
        env["INVOICE_WORKER_SETTLE_SECONDS"] = str(settle)
    env.update({f"INVOICE_WORKER_{k.upper()}": v for k, v in settings.items()})
    return env


def discard(home: Path) -> None:
    """Put a finished case's home out of the way without deleting its many small files yet.

    On ext4 without a journal (as this host's disk is mounted), a new inode is not taken
    from those deleted in the last 30 seconds, and looking past each costs: 20,000 files
    created just after 20,000 were deleted took 160-300 us each, against 26 us 40 s later.
    Deleting a case's home at once made the next case pay for it: the .eml case followed
    a case's cleanup and measured the disk's bookkeeping. So its large files go now (few
    inodes, most of the space), and the rest is renamed into the scratch folder's trash,
    deleted with the scratch folder after the last case."""
    if not home.exists():
        return
    for folder, _, names in os.walk(home):
        for name in names:
            path = Path(folder, name)
            try:
                if path.stat().st_size >= LARGE_BYTES:
                    path.unlink()
            except OSError:
                continue
    trash = home.parent / TRASH
    trash.mkdir(exist_ok=True)
    home.rename(trash / f"{home.name}-{time.monotonic_ns()}")


def fresh_home(scratch: Path, name: str) -> Path:
    home = scratch / name
    shutil.rmtree(home, ignore_errors=True)
    for folder in ("inbox", "outbox"):
        (home / folder).mkdir(parents=True)
    return home


def place(source: Path, inbox: Path) -> Path:
    """Put ``source`` into ``inbox`` at once: a hard link (a copy across filesystems)."""
    target = inbox / source.name
    try:
        os.link(source, target)
    except OSError:
        tmp = inbox / f".{source.name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.rename(target)
    return target


@dataclass
class OnceResult:
    run: measure.Run
    #: Seconds from start to the results file.
    results_at: float | None
    customer_emails: int
    admin_emails: int


def run_once(
    scratch: Path,
    name: str,
    source: Path,
    timeout: float = 3600,
    linger: float | None = None,
    **settings: str,
) -> OnceResult:
    """``invoice-worker run --once`` on a home whose inbox holds ``source``.

    ``linger``: stop it (SIGTERM) that many seconds after the results file, for files
    whose customer emails, paced, would keep it going for hours. ``settings``: more of
    the product's settings, as :func:`product_env` takes them (``database_url=...``).
    """
    home = fresh_home(scratch, name)
    place(source, home / "inbox")
    results = home / "outbox" / f"{source.name}.results.csv"
    done = measure.run(
        product_command("run", "--once"),
        env=product_env(home, SETTLE_SECONDS, **settings),
        cwd=home,
        timeout=timeout,
        mark=results.exists,
        linger=linger,
    )
    if (done.returncode != 0 and not done.stopped) or not results.exists():
        raise RuntimeError(f"{name}: run --once failed ({done.returncode}):\n{done.stderr[-3000:]}")
    mails = [p.name for p in (home / "mail").glob("*.eml")]
    admin = sum(1 for m in mails if m.split("-", 1)[-1].startswith("file-"))
    result = OnceResult(done, done.marked_at, len(mails) - admin, admin)
    discard(home)
    return result


def validate(scratch: Path, source: Path) -> measure.Run:
    """``invoice-worker validate FILE`` (exit 1: the file has bad rows, as it should)."""
    home = fresh_home(scratch, "validate")
    done = measure.run(
        product_command("validate", "--limit", "0", str(source)),
        env=product_env(home),
        cwd=home,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"validate failed ({done.returncode}):\n{done.stderr[-3000:]}")
    shutil.rmtree(home, ignore_errors=True)
    return done
