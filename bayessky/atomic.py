"""One mechanism for every file bayessky writes: a temporary file in the target's folder, renamed
over the target with ``os.replace`` (atomic on POSIX and Windows) only when the writer finished.
A run killed or failing at any moment leaves the old file or none, never a truncated one, and
the temporary file is removed on failure.

Two guarantees follow from ``os.replace``: a symlink planted under the target's name is replaced
itself, never followed (its target, possibly outside the output folder, is left untouched), and
the file gets the mode of any file the process creates (0o666 less the umask), not
``mkstemp``'s private 0o600."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "write_json", "file_mode"]


def _umask() -> int:
    # /proc reads the umask without changing it; os.umask can only read it by setting it, which
    # would race with other threads creating files in between
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permission bits of a newly created file: 0o666 less the process's umask."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; it replaces ``path`` on success.

    ``suffix`` (default: ``path``'s own) is kept on the temporary name, since writers such as
    ``np.savez`` and ``Figure.savefig`` choose or append a format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())  # after the writer, which may have re-created the file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    with atomic_path(path, suffix=".tmp") as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())  # on disk before the rename: a crash cannot leave an empty checkpoint
    return path


def write_json(path, obj) -> Path:
    """Strict JSON (no NaN/inf), indented, written atomically."""
    return atomic_write(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())
