"""Files arriving: from the inbox to a claimed file with a row, and on to their last folder.

- ``watcher``: watchdog events and periodic scans, the settle check, the claim, and the
  reconciliation of what a crash left.
- ``names``: which names are picked up, and names made safe for our folders.
- ``claim``: the atomic rename out of the inbox, the row, and the final moves.
- ``readers``: bytes to polars (encodings, delimiters, headers), each kind told by its
  header signature.
- ``workbooks``: a workbook's first sheet as a CSV for ``readers``; ``sheets`` and
  ``opendocument`` check its package first, within ``bounds``.
"""
