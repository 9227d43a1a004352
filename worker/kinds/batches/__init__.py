"""Batch request files (many to one, IremboPay "Create Batch Invoice").

- ``kind``: the :class:`BatchFiles` hooks the pipeline calls.
- ``requests``: requests read from JSON or CSV, each decided whole in one transaction.
- ``check``: ``invoice-worker validate`` for batch request files.
"""

from worker.kinds.batches.kind import BatchFiles

__all__ = ["BatchFiles"]
