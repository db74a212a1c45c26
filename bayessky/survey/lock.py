"""One run per output folder: an exclusive ``fcntl.flock`` on ``OUT/.lock``.

flock locks belong to the open file, so the kernel drops the lock when the holder exits, however it
exits (a SIGKILL included): a stale lock file never blocks the next run, and nothing has to guess
whether a recorded process id is still alive.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .errors import SurveyError

__all__ = ["out_lock", "LOCK_NAME"]

LOCK_NAME = ".lock"


@contextmanager
def out_lock(out: str | os.PathLike, flag: str = "--out"):
    """Hold the folder's lock for the ``with`` block; refuse (one line) when another run holds it."""
    import fcntl

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    try:
        # O_NOFOLLOW: a symlink planted as the lock file must not make the run create or open a
        # file outside --out
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError:
        if os.path.islink(path):
            raise SurveyError(f"{flag}: {str(path)!r} is a symlink; remove it (bayessky follows no "
                              "links when writing)") from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SurveyError(f"{flag}: another bayessky run is writing to {str(out)!r} "
                              f"(it holds {str(path)!r}); wait for it or choose another folder") from None
        # the file stays empty: it is never replaced (a new inode would be a second lock), so it is
        # the one file of a run not written through bayessky.atomic
        yield path
    finally:
        os.close(fd)  # releases the flock
