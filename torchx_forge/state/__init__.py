"""Where forge keeps what it must not lose: app records, task state files, run tables, code
versions, in a state dir that is a local path or any fsspec URL. Writes are atomic.

``files`` and ``taskfile`` are standard library only (fsspec is imported only for URLs): the task
launcher uses them on every compute node. ``store``, ``records`` and ``codeversion`` are for the
submit side.
"""
