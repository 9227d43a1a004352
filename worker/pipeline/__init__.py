"""What is the same for every kind of file.

- ``runtime``: what a job needs (settings, store, the kinds), built once a process.
- ``stages``: the stage machine; every job reads the state and does what is not done.
- ``kind``: the :class:`FileKind` base (hooks that do nothing by default) and the
  registry type :class:`Kinds`.
- ``groups``: a burst's small files validated together, then each on its own.
- ``chunks``: a file's work in progress as Parquet chunks; ``frames``: rows prepared
  for a kind's rules.
- ``results``: result files, atomic and formula-safe; ``check``: ``validate``'s report.
"""
