"""A file whose work was lost is validated again from its claimed original.

What validation keeps for processing lives in the validating host's own ``var/``
(SPEC 14). When that host dies mid-file, another takes the file over once its lease
runs out and finds no chunks: it undoes what those chunks created (the kind says what,
``FileKind.forget``) and validates the file again, from the original that stays in the
shared ``inbox/.claimed/``. Nothing is then created twice, and nothing is lost.
"""

from __future__ import annotations

import logging

from worker import log
from worker.pipeline.kind import FileKind
from worker.pipeline.runtime import Runtime
from worker.state import File, FileState, files


def validate_again(rt: Runtime, file: File, kind: FileKind) -> None:
    """Undo what the lost work made and send the file back to validating."""
    with rt.store.atomic() as conn:
        forgotten = kind.forget(rt, conn, file)
        files.transition(conn, file.id, FileState.VALIDATING, number_base=None)
    log.event(
        "file.work_lost",
        logging.WARNING,
        file_id=file.id,
        name=file.name,
        state=file.state,
        undone=forgotten,
        then="validating again from the claimed original",
    )
