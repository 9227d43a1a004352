"""Small files advanced together: a burst of them shares one validation query.

For a 10-row file the fixed cost of a polars query is most of its validation, and
its message a good part of the rest. So the watcher sends the small files it claims
together as groups (:func:`split`), and a group's run (:func:`advance_many`) takes
each file's lease, takes each as far as validation on its own, validates the one-chunk
invoice files among them in one query, then takes each on alone, as
``pipeline.advance`` would.

A group is not a state: each file's chunks and summary are those its own validation
would give, recorded by the same stage. What the grouped step leaves (a file of
another kind or of several chunks, one that fails to read) its own stages do, and a
crash at any point leaves files that the per-file stages finish.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

from worker import log
from worker.errors import FileRejected, LeaseHeld
from worker.pipeline import chunks, stages
from worker.pipeline.kind import FileKind, SmallFile, Summary
from worker.pipeline.runtime import Runtime
from worker.state import RELEASED_STATES, FileState, files
from worker.state.leases import Lease

#: Files up to this size may go in a group (about 250 invoice rows).
SMALL_FILE_BYTES = 64 * 1024
#: At most this many files a group: past it the query's fixed cost is already small,
#: and larger groups would leave worker threads idle in a short burst.
MAX_GROUP = 16

VALIDATING = frozenset({FileState.VALIDATING})
Found = dict[int, tuple[FileKind, Summary]]


def split(sizes: Iterable[tuple[int, int]], workers: int) -> tuple[list[int], list[list[int]]]:
    """``(file id, size)`` pairs as (files to advance alone, groups of small files).

    Groups are as even as can be, of at most :data:`MAX_GROUP` files, and as many as
    ``workers`` when there are enough small files, so that a short burst still keeps
    every worker busy. A small file left on its own is advanced alone."""
    alone: list[int] = []
    small: list[int] = []
    for file_id, size in sorted(sizes):
        (small if size <= SMALL_FILE_BYTES else alone).append(file_id)
    count = min(len(small), max(-(-len(small) // MAX_GROUP), workers))
    bounds = [round(i * len(small) / count) for i in range(count + 1)] if count else [0]
    groups = [small[a:b] for a, b in itertools.pairwise(bounds)]
    alone += [g[0] for g in groups if len(g) == 1]
    return sorted(alone), [g for g in groups if len(g) > 1]


def advance_many(rt: Runtime, file_ids: list[int]) -> None:
    """Advance each file as far as it can go now, validating the small ones together.

    A file another run holds is left to it. An error in one file's stages does not stop
    the others: the first is raised at the end, so that the message is retried (and the
    files finished meanwhile are skipped then)."""
    failures: list[Exception] = []
    waiting: list[Lease] = []
    try:
        for file_id in file_ids:
            lease = _take(rt, file_id, failures)
            if lease is not None and _run(rt, lease, failures, VALIDATING) == FileState.VALIDATING:
                waiting.append(lease)
        try:
            found = _validate_together(rt, waiting)
        except Exception as exc:
            # Each file's own validating stage does the work, and reports what it finds.
            log.event(
                "group.validation_failed", logging.WARNING, files=len(waiting), error=str(exc)
            )
            found = {}
        while waiting:
            lease = waiting.pop(0)
            _run(rt, lease, failures, frozenset(), found.get(lease.file_id))
    finally:
        for lease in waiting:
            lease.release()
    if failures:
        raise failures[0]


def _take(rt: Runtime, file_id: int, failures: list[Exception]) -> Lease | None:
    """The file's lease, or None when it is done, held by another run, or the store
    failed (kept in ``failures``)."""
    lease = Lease(rt.store, file_id, rt.settings.lease_seconds)
    try:
        if files.get(rt.store, file_id).state in RELEASED_STATES:
            return None
        lease.take()
    except LeaseHeld as why:
        log.event("file.lease_held", file_id=file_id, detail=str(why))
        return None
    except Exception as exc:
        failures.append(exc)
        return None
    return lease


def _run(
    rt: Runtime,
    lease: Lease,
    failures: list[Exception],
    pause_at: frozenset[FileState],
    found: tuple[FileKind, Summary] | None = None,
) -> FileState | None:
    """``pipeline.run``, an error kept for later (the run has let go of the lease)."""
    try:
        return stages.run(rt, lease, pause_at, found)
    except LeaseHeld as why:
        log.event("file.lease_held", file_id=lease.file_id, detail=str(why))
    except Exception as exc:
        failures.append(exc)
    return None


def _validate_together(rt: Runtime, leases: list[Lease]) -> Found:
    """Validate the one-chunk files among ``leases`` together, a query for each kind that
    can (``FileKind.validate_many``); their kinds and summaries, for the validating stage
    to record."""
    by_kind: dict[str, tuple[FileKind, list[SmallFile]]] = {}
    for lease in leases:
        try:
            kind, table, file = stages.open_file(rt, files.get(rt.store, lease.file_id))
            if not kind.groups_small_files:
                continue
            raw = chunks.one_chunk(table, rt.settings.chunk_rows)
        except (FileRejected, OSError):
            continue  # the file's own validating stage reports it
        if raw is not None:
            by_kind.setdefault(kind.name, (kind, []))[1].append((file, table, raw))
    found: Found = {}
    for together, small in by_kind.values():
        if len(small) < 2:
            continue
        summaries = together.validate_many(rt, small)
        log.event("group.validated", logging.DEBUG, files=[f.id for f, _, _ in small])
        found.update({f.id: (together, s) for (f, _, _), s in zip(small, summaries, strict=True)})
    return found
