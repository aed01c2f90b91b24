"""Writing a file so that a reader (a download, a resume, a crash) sees the old file or the new
one, never half of one. No torch here: the worker's plots use it too."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def remove_partial_writes(targets: Iterable[Path]) -> list[str]:
    """Delete the temporary files atomic_write left beside these targets when its process was
    killed mid-write (SIGKILL, power loss). Only for files no other process writes (a job's
    own outputs, under its lease). Returns the names removed."""
    removed = []
    for target in targets:
        for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


@contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; when the block ends without an error
    the file is flushed to disk (fsync), made 0644 and moved onto `path` in one step. On an
    error it is removed and `path` is left as it was.

        with atomic_write(path) as tmp:
            save_file(tensors, tmp)
    """
    path = Path(path)
    # Same folder: the rename stays on one filesystem, so it is atomic.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
