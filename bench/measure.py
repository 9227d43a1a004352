"""Whole processes, timed: wall time and peak resident memory of a process and its children.

Peak RSS is summed over the process tree (the worker and its embedded
redis-server): for each process the kernel's own high-water mark (``VmHWM`` in
``/proc/PID/status``, so a peak between two samples is not missed), read every
``SAMPLE_SECONDS``. Summing each process's peak can only overstate the peak of
the sum. ``ru_maxrss`` from ``wait4`` is not used: a child forked from this
(large) process reports the parent's pages until it execs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

#: VmHWM is the kernel's own peak, so sampling often is not needed to catch a peak;
#: only to see a child's peak before the child exits.
SAMPLE_SECONDS = 0.1
#: Listing a tree's children walks all of /proc: done this often, not at every sample.
TREE_SECONDS = 1.0
MIB = 1 << 20


@dataclass
class Run:
    """One process's wall time, peak memory and what it printed."""

    wall: float
    peak_rss: int
    returncode: int
    stdout: str = ""
    stderr: str = ""
    #: Seconds from start at which ``mark`` first held, when one was given.
    marked_at: float | None = None
    #: Whether it was asked to stop (timeout or linger) rather than ending by itself.
    stopped: bool = False

    @property
    def peak_mib(self) -> float:
        return self.peak_rss / MIB


def high_water(proc: psutil.Process) -> int:
    """A process's peak RSS so far (VmHWM), or its current RSS where /proc has no peak."""
    try:
        with open(f"/proc/{proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(proc.memory_info().rss)


class TreeSampler:
    """Samples a process tree in a thread; keeps each process's peak and their sum.

    ``Popen`` returns once the root has exec'd, so its high-water mark is its own.
    A child it forks shares its pages until that child execs; a child is counted
    once it runs another command line (the embedded redis-server, the worker
    processes that ``multiprocessing`` spawns).
    """

    def __init__(self, pid: int) -> None:
        self._peaks: dict[tuple[int, float], int] = {}
        self._root = psutil.Process(pid)
        self._root_cmdline = self._root.cmdline()
        self._procs: list[psutil.Process] = [self._root]
        self._listed = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def peak(self) -> int:
        return sum(self._peaks.values())

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        if time.monotonic() - self._listed > TREE_SECONDS:
            self._listed = time.monotonic()
            try:
                children = self._root.children(recursive=True)
            except psutil.Error:
                children = []
            self._procs = [self._root, *children]
        for proc in self._procs:
            try:
                if proc is not self._root and proc.cmdline() == self._root_cmdline:
                    continue
                key = (proc.pid, proc.create_time())
                self._peaks[key] = max(self._peaks.get(key, 0), high_water(proc))
            except psutil.Error:
                continue

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_SECONDS)


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600,
    mark: Callable[[], bool] | None = None,
    linger: float | None = None,
) -> Run:
    """Run ``cmd`` to its end; ``mark`` is polled to time an event inside the run.

    With ``linger``, the process is asked to stop (SIGTERM) that many seconds after
    ``mark`` held, if it has not ended by itself; ``Run.stopped`` then says so.
    """
    out_path = Path(cwd or ".") / f".bench-{os.getpid()}-{time.monotonic_ns()}"
    with open(f"{out_path}.out", "w+") as out, open(f"{out_path}.err", "w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        marked_at = None
        status = None
        stopped = False
        with TreeSampler(proc.pid) as sampler:
            while status is None:
                pid, status_code, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    status = status_code
                    break
                if marked_at is None and mark is not None and mark():
                    marked_at = time.perf_counter() - start
                now = time.perf_counter() - start
                lingered = linger is not None and marked_at is not None and now > marked_at + linger
                if now > timeout or (lingered and not stopped):
                    proc.send_signal(signal.SIGTERM)
                    timeout, stopped = float("inf"), True
                time.sleep(0.005 if mark is not None and marked_at is None else 0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if marked_at is None and mark is not None and mark():
            marked_at = wall
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for suffix in (".out", ".err"):
        Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    return Run(
        wall=wall,
        peak_rss=sampler.peak,
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        marked_at=marked_at,
        stopped=stopped,
    )
