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
import sqlite3
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from notifications import outbox, reports
from notifications.reports import Envelope
from worker import files, kinds, log, readers
from worker.errors import FileRejected, StateError
from worker.kinds import Summary
from worker.leases import Lease
from worker.results import error_doc, result_stem, write_json
from worker.settings import Settings
from worker.store import RELEASED_STATES, Store


@dataclass
class Runtime:
    """What a job needs, built once per process and passed down."""

    settings: Settings
    store: Store
    #: Called after an email is recorded, to get it delivered soon.
    kick_mail: Callable[[], None] = field(default=lambda: None)
    #: Called after a merchant webhook is recorded, to get it delivered soon.
    kick_webhooks: Callable[[], None] = field(default=lambda: None)
    #: Called after invoices are created, to start their customers' emails.
    kick_invoice_mail: Callable[[], None] = field(default=lambda: None)

    @property
    def envelope(self) -> Envelope:
        return Envelope(sender=self.settings.mail_from, admins=self.settings.admin_emails)

    def work(self, file: kinds.Record) -> Path:
        return self.settings.work / str(file["id"])


def _file_doc(file: sqlite3.Row) -> dict[str, object]:
    return {"id": file["id"], "name": file["name"], "kind": file["kind"] or "unknown"}


def set_state(rt: Runtime, file_id: int, state: str, **fields: object) -> None:
    with rt.store.write() as conn:
        rt.store.transition(conn, file_id, state, **fields)
    _logged(rt, file_id, state, fields)


def _logged(rt: Runtime, file_id: int, state: str, fields: Mapping[str, object]) -> None:
    file = rt.store.file(file_id)
    keep = ("kind", "rows", "valid", "rejected", "created", "error_code", "result_name")
    extra = {k: v for k, v in fields.items() if k in keep}
    log.event(f"file.{state}", file_id=file_id, name=file["name"], **extra)


# -- stages -------------------------------------------------------------------


def _intake(rt: Runtime, file: sqlite3.Row, renew: Callable[[], None]) -> None:
    path = Path(file["claimed_path"])
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
    earlier = rt.store.one(
        "SELECT id, name FROM files WHERE sha256 = ? AND id < ? AND duplicate_of IS NULL"
        " ORDER BY id LIMIT 1",
        (file["sha256"], file["id"]),
    )
    if earlier is not None:
        with rt.store.write() as conn:
            rt.store.update_file(conn, file["id"], duplicate_of=earlier["id"])
        raise FileRejected(
            "DUPLICATE_FILE",
            f"same content as file {earlier['id']} ({earlier['name']}), received earlier",
        )
    set_state(rt, file["id"], "validating")


def _validate(rt: Runtime, file: sqlite3.Row, renew: Callable[[], None]) -> None:
    kind, table, file = open_file(rt, file)
    summary = kind.validate(rt, file, table)
    renew()
    validated(rt, file, kind, summary)


def _record(
    rt: Runtime,
    file: sqlite3.Row,
    renew: Callable[[], None],
    *,
    kind: kinds.FileKind,
    summary: Summary,
) -> None:
    validated(rt, file, kind, summary)


def open_file(rt: Runtime, file: sqlite3.Row) -> tuple[kinds.FileKind, readers.Table, sqlite3.Row]:
    """The file's table and kind, its kind recorded; the file's row read again."""
    table = readers.open_table(Path(file["claimed_path"]), rt.work(file), rt.settings.encoding)
    kind = kinds.get(table.kind)
    if kind is None:
        raise FileRejected("UNKNOWN_FILE_KIND", f"{table.kind} files are not supported yet")
    with rt.store.write() as conn:
        rt.store.update_file(conn, file["id"], kind=kind.name)
    return kind, table, rt.store.file(file["id"])


def validated(rt: Runtime, file: sqlite3.Row, kind: kinds.FileKind, summary: Summary) -> None:
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
    if kind.error_rate_applies and summary.error_rate > rt.settings.max_error_rate:
        with rt.store.write() as conn:
            rt.store.update_file(conn, file["id"], **counts)
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
            f"waiting for approval: invoice-worker approve {file['id']}"
            if approval
            else "processing the valid rows now"
        )
        msg = reports.validation(
            rt.envelope,
            _file_doc(file),
            rows=summary.rows,
            valid=summary.valid,
            rejected=summary.rejected,
            first_errors=summary.first_errors,
            unknown_columns=summary.unknown_columns,
            next_step=next_step,
            # No rejected row, no attachment: the chunks need not be read again.
            errors_csv=kind.errors_csv(rt, file) if summary.rejected else None,
        )
    then = _after_validation(rt, file)
    with rt.store.write() as conn:
        base = kind.reserve(rt, conn, summary)
        rt.store.transition(conn, file["id"], "validated", number_base=base, **counts)
        if msg is not None:
            outbox.record(conn, f"file:{file['id']}:validated", "validated", file["id"], msg)
        # The results' name and the next stage go in the same transaction: two fewer
        # writes for each file, a fifth of them for a small one.
        if not file["result_name"]:
            _choose_stem(rt, conn, file)
        rt.store.transition(conn, file["id"], then)
    _logged(rt, file["id"], "validated", counts)
    _logged(rt, file["id"], then, {})
    rt.kick_mail()


def _after_validation(rt: Runtime, file: sqlite3.Row) -> str:
    if rt.settings.require_approval and not file["approved_at"]:
        return "awaiting_approval"
    return "processing"


def _release(rt: Runtime, file: sqlite3.Row, renew: Callable[[], None]) -> None:
    """A file left validated (by a version that released it in a write of its own)."""
    set_state(rt, file["id"], _after_validation(rt, file))


def _process(rt: Runtime, file: sqlite3.Row, renew: Callable[[], None]) -> None:
    kind = kinds.get(file["kind"])
    assert kind is not None, file["kind"]
    kind.process(rt, file, renew)
    file = rt.store.file(file["id"])
    name = _result_stem(rt, file) + kind.result_suffix
    kind.write_results(rt, file, rt.settings.outbox / name, created=True)
    target = _move_original(rt, file, rt.settings.archive)
    created = rt.store.row(
        "SELECT coalesce(sum(created), 0) AS n FROM chunks WHERE file_id = ?", (file["id"],)
    )
    done = {"created": created["n"], "final_path": str(target)}
    report = kind.processing_report(rt, {**dict(rt.store.file(file["id"])), **done})
    with rt.store.write() as conn:
        rt.store.transition(conn, file["id"], "processed", **done)
        outbox.record(conn, f"file:{file['id']}:processed", "processed", file["id"], report)
    _logged(rt, file["id"], "processed", {"created": created["n"], "result_name": name})
    _cleanup(rt, file)
    rt.kick_mail()
    # Customer emails follow the results and the report, paced, in their own actor.
    rt.kick_invoice_mail()


STAGES: dict[str, Callable[[Runtime, sqlite3.Row, Callable[[], None]], None]] = {
    "received": _intake,
    "validating": _validate,
    "validated": _release,
    "processing": _process,
}


# -- shared steps ------------------------------------------------------------


def _result_stem(rt: Runtime, file: sqlite3.Row) -> str:
    """The stem of the file's results, chosen once and recorded, so a re-run rewrites the same."""
    if file["result_name"]:
        return str(file["result_name"])
    with rt.store.write() as conn:
        return _choose_stem(rt, conn, file)


def _choose_stem(rt: Runtime, conn: sqlite3.Connection, file: sqlite3.Row) -> str:
    """Choose and record the results' stem inside the caller's transaction."""

    def taken(stem: str) -> bool:
        sql = "SELECT 1 FROM files WHERE result_name = ? LIMIT 1"
        return conn.execute(sql, (stem,)).fetchone() is not None

    stem = result_stem(rt.settings.outbox, file["name"], file["id"], taken)
    rt.store.update_file(conn, file["id"], result_name=stem)
    return stem


def _move_original(rt: Runtime, file: sqlite3.Row, folder: Path) -> Path:
    source = Path(file["claimed_path"])
    if file["final_path"] and not (source.exists() or source.is_symlink()):
        return Path(file["final_path"])
    with rt.store.write() as conn:
        # Chosen and recorded in one transaction: two files of the same name finishing
        # at once would otherwise both pick folder/name, and the second move replace
        # the first original.
        def taken(path: Path) -> bool:
            sql = "SELECT 1 FROM files WHERE final_path = ? AND id != ? LIMIT 1"
            return conn.execute(sql, (str(path), file["id"])).fetchone() is not None

        target = files.final_name(folder, file["name"], file["id"], taken)
        rt.store.update_file(conn, file["id"], final_path=str(target))
    if source.exists() or source.is_symlink():
        files.move(source, target)
    return target


def _cleanup(rt: Runtime, file: sqlite3.Row) -> None:
    shutil.rmtree(rt.work(file), ignore_errors=True)


def reject(rt: Runtime, file_id: int, why: FileRejected) -> None:
    """A whole-file rejection: error.json (and results when rows were read), original to
    rejected/, the administrators told. Safe to repeat."""
    file = rt.store.file(file_id)
    kind = kinds.get(file["kind"])
    with rt.store.write() as conn:
        rt.store.update_file(
            conn, file_id, error_code=why.code, error_message=why.message, error_line=why.line
        )
    stem = _result_stem(rt, file)
    error_name = stem + ".error.json"
    write_json(
        rt.settings.outbox / error_name, error_doc(file["name"], why.code, why.message, why.line)
    )
    errors_csv = None
    if why.code == "TOO_MANY_ERRORS" and kind is not None:
        target = rt.settings.outbox / (stem + kind.result_suffix)
        kind.write_results(rt, rt.store.file(file_id), target, created=False)
        errors_csv = kind.errors_csv(rt, file)
    target = _move_original(rt, rt.store.file(file_id), rt.settings.rejected)
    file = rt.store.file(file_id)
    msg = reports.rejection(
        rt.envelope,
        _file_doc(file),
        code=why.code,
        message=why.message,
        line=why.line,
        result_name=error_name,
        rejected=file["rejected"] or 0,
        errors_csv=errors_csv,
    )
    with rt.store.write() as conn:
        rt.store.transition(conn, file_id, "rejected", final_path=str(target))
        outbox.record(conn, f"file:{file_id}:rejected", "rejected", file_id, msg)
    _logged(rt, file_id, "rejected", {"error_code": why.code, "result_name": error_name})
    _cleanup(rt, file)
    rt.kick_mail()


# -- the job ------------------------------------------------------------------


def advance(rt: Runtime, file_id: int) -> str:
    """Move a file through as many stages as it can go now; returns where it stopped."""
    file = rt.store.file(file_id)
    if file["state"] in RELEASED_STATES:
        return str(file["state"])
    lease = Lease(rt.store, file_id, rt.settings.lease_seconds)
    lease.take()
    return run(rt, lease)


def run(
    rt: Runtime,
    lease: Lease,
    pause_at: frozenset[str] = frozenset(),
    found: tuple[kinds.FileKind, Summary] | None = None,
) -> str:
    """Take a leased file through its stages until it is released (which lets go of the
    lease) or reaches a state in ``pause_at`` (the lease is kept); returns the state.

    ``found``: the file's kind and its validation's summary, its chunks already written
    (by ``worker.groups``); the validating stage then records them instead."""
    file_id = lease.file_id
    # The transition into a released state clears the lease; no write is needed after.
    keep = False
    try:
        while True:
            file = rt.store.file(file_id)
            if file["state"] in RELEASED_STATES:
                keep = True
                return str(file["state"])
            if file["state"] in pause_at and not file["error_code"]:
                keep = True
                return str(file["state"])
            lease.renew()
            if file["error_code"]:
                # A rejection was decided (reject() records it first) and cut short by a
                # crash: finish it with its own code; the original may already be moved.
                reject(
                    rt,
                    file_id,
                    FileRejected(file["error_code"], file["error_message"], file["error_line"]),
                )
                keep = True
                return "rejected"
            stage = STAGES.get(file["state"])
            if found is not None and file["state"] == "validating":
                stage = functools.partial(_record, kind=found[0], summary=found[1])
                found = None
            if stage is None:
                return str(file["state"])
            try:
                stage(rt, file, lease.renew)
            except FileRejected as why:
                if file["state"] == "processing":
                    raise
                reject(rt, file_id, why)
            except OSError as exc:
                # Disk full, a folder not writable: nothing is marked done; retried later.
                _stalled(rt, file, exc)
                raise
    finally:
        if not keep:
            lease.release()


def _stalled(rt: Runtime, file: sqlite3.Row, exc: OSError) -> None:
    log.event(
        "file.stalled",
        logging.ERROR,
        file_id=file["id"],
        name=file["name"],
        state=file["state"],
        error=f"{exc.strerror or exc} ({exc.filename or ''})",
    )
    with contextlib.suppress(Exception):
        msg = reports.stalled(rt.envelope, _file_doc(file), state=file["state"], error=str(exc))
        with rt.store.write() as conn:
            outbox.record(conn, f"file:{file['id']}:stalled", "stalled", file["id"], msg)
        rt.kick_mail()


def approve(store: Store, file_id: int) -> sqlite3.Row:
    """Release a file waiting for approval; the reconciler enqueues it.

    Raises StateError when there is no such file or it is not waiting."""
    with store.write() as conn:
        row = conn.execute("SELECT state FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise StateError(f"no file with id {file_id}")
        if row["state"] != "awaiting_approval":
            raise StateError(f"file {file_id} is {row['state']}, not awaiting approval")
        conn.execute(
            "UPDATE files SET approved_at = ?, enqueued_at = NULL WHERE id = ?",
            (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), file_id),
        )
        store.transition(conn, file_id, "processing")
    file = store.file(file_id)
    log.event("file.processing", file_id=file_id, name=file["name"], approved=True)
    return file
