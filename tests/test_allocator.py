"""polars' allocator returns freed pages after 100 ms in every invoice-worker process."""

from __future__ import annotations

import os
import subprocess
import sys

from worker import allocator

SHOW = "import worker, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"


def _conf(environ: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SHOW], env=environ, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _without_conf() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}


def test_the_worker_sets_the_decay_options_before_polars_reads_them() -> None:
    # polars appends this variable to its own options when it is imported; the last
    # of a repeated option wins, so ours must come after polars' decay times.
    options = _conf(_without_conf()).split(",")
    assert options[-3:] == allocator.JEMALLOC_CONF.split(",")


def test_an_operators_own_allocator_options_are_kept() -> None:
    environ = {**_without_conf(), "_RJEM_MALLOC_CONF": "narenas:1"}
    options = _conf(environ).split(",")
    assert options[-1] == "narenas:1"
    assert "background_thread:true" not in options
