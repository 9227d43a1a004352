"""The stage machine: which stage a file is in, and what runs next.

received -> validating -> validated -> [awaiting_approval ->] processing -> processed,
or -> rejected from any stage before processing. Every job starts by reading
the state, takes the file's lease (so a redelivered message stands back while
the first run is alive), and does only what is not yet recorded. Each step's
effects are idempotent: results are rewritten under the name recorded before,
the original is moved only if still in the claim folder, an email is recorded
under a key that exists once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from notifications import reports
from worker import log
from worker.errors import FileRejected
from worker.intake import claim, complete, readers
from worker.intake.names import safe_stem
from worker.pipeline import remake
from worker.pipeline.kind import FileKind, Summary
from worker.pipeline.results import RESULT_SUFFIXES, error_doc, result_stem, write_json
from worker.pipeline.runtime import Runtime
from worker.state import (
    RELEASED_STATES,
    Connection,
    File,
    FileState,
    Store,
    chunks,
    files,
    outbox,
    retries,
)
from worker.state.leases import Lease


def _file_doc(file: File) -> dict[str, object]:
    return {"id": file.id, "name": file.name, "kind": file.kind or "unknown"}


def set_state(rt: Runtime, file_id: int, state: FileState, **fields: object) -> None:
    with rt.store.atomic() as conn:
        files.transition(conn, file_id, state, **fields)
    _logged(rt, file_id, state, fields)


def _logged(rt: Runtime, file_id: int, state: FileState, fields: Mapping[str, object]) -> None:
    file = files.get(rt.store, file_id)
    keep = (
        "kind",
        "rows",
        "valid",
        "rejected",
        "existing",
        "created",
        "error_code",
        "result_name",
    )
    extra = {k: v for k, v in fields.items() if k in keep}
    log.event(f"file.{state}", file_id=file_id, name=file.name, **extra)


# -- stages -------------------------------------------------------------------


def _intake(rt: Runtime, file: File, renew: Callable[[], None]) -> None:
    moving = retries.pending(rt.store, file.id)
    if moving is not None:
        # A retry recorded, its requester gone before it moved the original back.
        claim.finish_retry(rt.settings, rt.store, moving)
    path = Path(file.claimed_path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise FileRejected(
            "UNREADABLE_FILE", "the claimed file disappeared before it was read"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise FileRejected(
            "UNREADABLE_FILE", "not a regular file (symbolic links and pipes are not followed)"
        )
    earlier = files.earlier_duplicate(rt.store, file)
    if earlier is not None:
        earlier_id, earlier_name = earlier
        with rt.store.atomic() as conn:
            files.update(conn, file.id, duplicate_of=earlier_id)
        raise FileRejected(
            "DUPLICATE_FILE",
            f"same content as file {earlier_id} ({earlier_name}), received earlier",
        )
    set_state(rt, file.id, FileState.VALIDATING)


def _validate(rt: Runtime, file: File, renew: Callable[[], None]) -> None:
    kind, table, file = open_file(rt, file)
    summary = kind.validate(rt, file, table)
    renew()
    if _unchanged_since_claim(rt, file, renew):
        validated(rt, file, kind, summary)


def _record(
    rt: Runtime,
    file: File,
    renew: Callable[[], None],
    *,
    kind: FileKind,
    summary: Summary,
) -> None:
    if _unchanged_since_claim(rt, file, renew):
        validated(rt, file, kind, summary)


def _unchanged_since_claim(rt: Runtime, file: File, renew: Callable[[], None]) -> bool:
    """Whether the file, now read in full, is as it was claimed; if not (a writer still
    had it open), wait until it is complete and record it as received again, to be hashed
    and read afresh: nothing is made from what was read."""
    path = Path(file.claimed_path)
    proof = complete.Proof.for_folder(rt.settings.claimed, rt.settings.settle_seconds)
    now = complete.snapshot(path, fresh=proof.mount)
    if file.mtime_ns is None or now is None or not now.regular:
        # Claimed by a version that kept no time, or gone: the next stage says what it is.
        return True
    same = (now.size, now.mtime_ns) == (file.size, file.mtime_ns)
    if same and complete.writers(path) is not complete.Writer.OPEN:
        return True
    log.event(
        "file.changed_after_claim",
        logging.WARNING,
        file_id=file.id,
        name=file.name,
        claimed_size=file.size,
        size=now.size,
        note="what was read is discarded; read again once it is complete",
    )
    _cleanup(rt, file)
    held = proof.wait(path, renew)
    if held is None:
        return True
    sha, size = claim.sha256_of(path)
    with rt.store.atomic() as conn:
        files.transition(
            conn,
            file.id,
            FileState.RECEIVED,
            sha256=sha,
            size=size,
            mtime_ns=held.mtime_ns,
            rows=None,
            valid=None,
            rejected=None,
            existing=None,
            chunks=None,
            unknown_columns=None,
        )
    _logged(rt, file.id, FileState.RECEIVED, {})
    return False


def open_file(rt: Runtime, file: File) -> tuple[FileKind, readers.Table, File]:
    """The file's table and kind, its kind recorded; the file's row read again."""
    path = Path(file.claimed_path)
    table = readers.open_table(
        path,
        rt.work(file),
        rt.kinds.signatures,
        rt.settings.encoding,
        timezone=rt.settings.spreadsheet_timezone,
    )
    kind = rt.kinds.get(table.kind)
    if kind is None:
        raise FileRejected("UNKNOWN_FILE_KIND", f"{table.kind} files are not supported yet")
    with rt.store.atomic() as conn:
        files.update(conn, file.id, kind=kind.name)
    return kind, table, files.get(rt.store, file.id)


def validated(rt: Runtime, file: File, kind: FileKind, summary: Summary) -> None:
    """Record what validation found (or reject the file for it) and release it onwards."""
    if summary.rows == 0:
        raise FileRejected("EMPTY_FILE", "the file has a header but no data rows", line=2)
    counts = {
        "rows": summary.rows,
        "valid": summary.valid,
        "rejected": summary.rejected,
        "chunks": summary.chunks,
        "unknown_columns": ",".join(summary.unknown_columns) or None,
    }
    if summary.exists:
        counts["existing"] = summary.exists
    if kind.error_rate_applies and summary.error_rate > rt.settings.max_error_rate:
        with rt.store.atomic() as conn:
            files.update(conn, file.id, **counts)
        raise FileRejected(
            "TOO_MANY_ERRORS",
            f"{summary.rejected} of {summary.rows} rows failed "
            f"({summary.error_rate:.1%}, more than max_error_rate "
            f"{rt.settings.max_error_rate:.1%}); no invoice was created",
        )
    approval = rt.settings.require_approval
    msg = None
    if kind.reports_validation:
        # Rendered before the transaction: the write lock is held by one writer at a time.
        next_step = (
            f"waiting for approval: invoice-worker approve {file.id}"
            if approval
            else "processing the valid rows now"
        )
        msg = reports.validation(
            rt.envelope,
            _file_doc(file),
            rows=summary.rows,
            valid=summary.valid,
            rejected=summary.rejected,
            existing=summary.exists,
            first_errors=summary.first_errors,
            unknown_columns=summary.unknown_columns,
            next_step=next_step,
            # No rejected row, no attachment: the chunks need not be read again.
            errors_csv=kind.errors_csv(rt, file) if summary.rejected else None,
        )
    then = _after_validation(rt, file)
    with rt.store.atomic() as conn:
        base = kind.reserve(rt, conn, summary)
        files.transition(conn, file.id, FileState.VALIDATED, number_base=base, **counts)
        if msg is not None:
            outbox.record(conn, _key(rt, file.id, "validated"), "validated", file.id, msg)
        # The results' name and the next stage go in the same transaction: two fewer
        # writes for each file, a fifth of them for a small one.
        if not file.result_name:
            _choose_stem(rt, conn, file)
        files.transition(conn, file.id, then)
    _logged(rt, file.id, FileState.VALIDATED, counts)
    _logged(rt, file.id, then, {})
    rt.kick_mail()


def _after_validation(rt: Runtime, file: File) -> FileState:
    if rt.settings.require_approval and not file.approved_at:
        return FileState.AWAITING_APPROVAL
    return FileState.PROCESSING


def _release(rt: Runtime, file: File, renew: Callable[[], None]) -> None:
    """A file left validated (by a version that released it in a write of its own)."""
    set_state(rt, file.id, _after_validation(rt, file))


def _process(rt: Runtime, file: File, renew: Callable[[], None]) -> None:
    kind = rt.kinds.get(file.kind)
    assert kind is not None, file.kind
    name = _result_stem(rt, file) + kind.result_suffix
    results = rt.settings.outbox / name
    if not kind.work_lost(rt, file):
        kind.process(rt, file, renew)
        file = files.get(rt.store, file.id)
        kind.write_results(rt, file, results, created=True)
    elif not results.exists():
        remake.validate_again(rt, file, kind)
        return
    # Else the work went with a host that died once the results were out (written
    # whole, under a temporary name then renamed): the ERP may have read them, and the
    # original may be in archive/ already. Only the bookkeeping is left to do.
    target = _move_original(rt, file, rt.settings.archive)
    created = chunks.created(rt.store, file.id)
    done: dict[str, object] = {"created": created, "final_path": str(target)}
    done.update(kind.processed_counts(rt, file))
    report = kind.processing_report(rt, files.get(rt.store, file.id).with_(**done))
    with rt.store.atomic() as conn:
        files.transition(conn, file.id, FileState.PROCESSED, **done)
        kind.release(rt, conn, file)
        if report is not None:
            outbox.record(conn, _key(rt, file.id, "processed"), "processed", file.id, report)
    _logged(rt, file.id, FileState.PROCESSED, {"created": created, "result_name": name})
    _cleanup(rt, file)
    rt.kick_mail()
    # Customer emails follow the results and the report, paced, in their own actor.
    rt.kick_invoice_mail()


STAGES: dict[FileState, Callable[[Runtime, File, Callable[[], None]], None]] = {
    FileState.RECEIVED: _intake,
    FileState.VALIDATING: _validate,
    FileState.VALIDATED: _release,
    FileState.PROCESSING: _process,
}


# -- shared steps ------------------------------------------------------------


def _result_stem(rt: Runtime, file: File) -> str:
    """The stem of the file's results, chosen once and recorded, so a re-run rewrites the same."""
    if file.result_name:
        return str(file.result_name)
    with rt.store.atomic() as conn:
        return _choose_stem(rt, conn, file)


def _choose_stem(rt: Runtime, conn: Connection, file: File) -> str:
    """Choose and record the results' stem inside the caller's transaction."""

    def taken(stem: str) -> bool:
        return files.result_name_taken(conn, stem)

    tried = retries.count(rt.store, file.id)
    if tried:
        # Tried again: named apart from what its earlier runs wrote, which may be gone.
        stem = retry_stem(rt.settings.outbox, file.name, file.id, tried, taken)
    else:
        stem = result_stem(rt.settings.outbox, file.name, file.id, taken)
    files.update(conn, file.id, result_name=stem)
    return stem


def retry_stem(
    folder: Path, name: str, file_id: int, tried: int, taken: Callable[[str], bool]
) -> str:
    """``<name>.retry<n>``, or ``<name>.<id>.retry<n>`` when another file's results
    have that: the stem of a file's results the ``tried``-th time it is tried again."""
    stem = ""
    for tail in (f".retry{tried}", f".{file_id}.retry{tried}"):
        reserve = len(tail.encode()) + max(len(s) for s in RESULT_SUFFIXES)
        stem = safe_stem(name, reserve) + tail
        if not taken(stem) and not any((folder / (stem + s)).exists() for s in RESULT_SUFFIXES):
            break
    return stem


def _key(rt: Runtime, file_id: int, what: str) -> str:
    """An email's outbox key: once per file, and once more for each time it is retried."""
    tried = retries.count(rt.store, file_id)
    return f"file:{file_id}:{what}" + (f":retry{tried}" if tried else "")


def _move_original(rt: Runtime, file: File, folder: Path) -> Path:
    source = Path(file.claimed_path)
    if file.final_path and not (source.exists() or source.is_symlink()):
        return Path(file.final_path)
    with rt.store.atomic() as conn:
        # Chosen and recorded in one transaction: two files of the same name finishing
        # at once would otherwise both pick folder/name, and the second move replace
        # the first original.
        def taken(path: Path) -> bool:
            return files.final_path_taken(conn, str(path), file.id)

        target = claim.final_name(folder, file.name, file.id, taken)
        files.update(conn, file.id, final_path=str(target))
    if source.exists() or source.is_symlink():
        claim.move(source, target)
    return target


def _cleanup(rt: Runtime, file: File) -> None:
    shutil.rmtree(rt.work(file), ignore_errors=True)


def reject(rt: Runtime, file_id: int, why: FileRejected) -> None:
    """A whole-file rejection: error.json (and results when rows were read), original to
    rejected/, the administrators told. Safe to repeat."""
    file = files.get(rt.store, file_id)
    kind = rt.kinds.get(file.kind)
    with rt.store.atomic() as conn:
        files.update(
            conn, file_id, error_code=why.code, error_message=why.message, error_line=why.line
        )
    stem = _result_stem(rt, file)
    error_name = stem + ".error.json"
    write_json(
        rt.settings.outbox / error_name, error_doc(file.name, why.code, why.message, why.line)
    )
    errors_csv = None
    if why.code == "TOO_MANY_ERRORS" and kind is not None:
        target = rt.settings.outbox / (stem + kind.result_suffix)
        kind.write_results(rt, files.get(rt.store, file_id), target, created=False)
        errors_csv = kind.errors_csv(rt, file)
    target = _move_original(rt, files.get(rt.store, file_id), rt.settings.rejected)
    file = files.get(rt.store, file_id)
    msg = reports.rejection(
        rt.envelope,
        _file_doc(file),
        code=why.code,
        message=why.message,
        line=why.line,
        result_name=error_name,
        rejected=file.rejected or 0,
        errors_csv=errors_csv,
    )
    with rt.store.atomic() as conn:
        files.transition(conn, file_id, FileState.REJECTED, final_path=str(target))
        outbox.record(conn, _key(rt, file_id, "rejected"), "rejected", file_id, msg)
    _logged(rt, file_id, FileState.REJECTED, {"error_code": why.code, "result_name": error_name})
    _cleanup(rt, file)
    rt.kick_mail()


# -- the job ------------------------------------------------------------------


def advance(rt: Runtime, file_id: int) -> FileState:
    """Move a file through as many stages as it can go now; returns where it stopped."""
    file = files.get(rt.store, file_id)
    if file.state in RELEASED_STATES:
        return file.state
    lease = Lease(rt.store, file_id, rt.settings.lease_seconds)
    lease.take()
    return run(rt, lease)


def run(
    rt: Runtime,
    lease: Lease,
    pause_at: frozenset[FileState] = frozenset(),
    found: tuple[FileKind, Summary] | None = None,
) -> FileState:
    """Take a leased file through its stages until it is released (which lets go of the
    lease) or reaches a state in ``pause_at`` (the lease is kept); returns the state.

    ``found``: the file's kind and its validation's summary, its chunks already written
    (by ``worker.groups``); the validating stage then records them instead."""
    file_id = lease.file_id
    # The transition into a released state clears the lease; no write is needed after.
    keep = False
    try:
        while True:
            file = files.get(rt.store, file_id)
            if file.state in RELEASED_STATES:
                keep = True
                return file.state
            if file.state in pause_at and not file.error_code:
                keep = True
                return file.state
            lease.renew()
            if file.error_code:
                # A rejection was decided (reject() records it first) and cut short by a
                # crash: finish it with its own code; the original may already be moved.
                reject(
                    rt,
                    file_id,
                    FileRejected(file.error_code, file.error_message or "", file.error_line),
                )
                keep = True
                return FileState.REJECTED
            stage = STAGES.get(file.state)
            if found is not None and file.state == FileState.VALIDATING:
                stage = functools.partial(_record, kind=found[0], summary=found[1])
                found = None
            if stage is None:
                return file.state
            try:
                stage(rt, file, lease.renew)
            except FileRejected as why:
                if file.state == FileState.PROCESSING:
                    raise
                reject(rt, file_id, why)
            except OSError as exc:
                # Disk full, a folder not writable: nothing is marked done; retried later.
                _stalled(rt, file, exc)
                raise
    finally:
        if not keep:
            lease.release()


def _stalled(rt: Runtime, file: File, exc: OSError) -> None:
    log.event(
        "file.stalled",
        logging.ERROR,
        file_id=file.id,
        name=file.name,
        state=file.state,
        error=f"{exc.strerror or exc} ({exc.filename or ''})",
    )
    with contextlib.suppress(Exception):
        msg = reports.stalled(rt.envelope, _file_doc(file), state=file.state, error=str(exc))
        with rt.store.atomic() as conn:
            outbox.record(conn, _key(rt, file.id, "stalled"), "stalled", file.id, msg)
        rt.kick_mail()


def approve(store: Store, file_id: int) -> File:
    """Release a file waiting for approval; the reconciler enqueues it.

    Raises StateError when there is no such file or it is not waiting."""
    file = files.approve(store, file_id)
    log.event("file.processing", file_id=file_id, name=file.name, approved=True)
    return file
