"""Atomic writes of the command-line outputs: an interrupted run leaves the old file or none,
never a truncated ``posterior.nc`` that ArviZ would half-read."""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_path


def write_netcdf(idata, path: str | os.PathLike) -> Path:
    """``idata.to_netcdf`` through :func:`bayessky.atomic.atomic_path`."""
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))
    return Path(path)


def write_csv(table, path: str | os.PathLike, **kwargs) -> Path:
    """``table.to_csv`` (a pandas DataFrame) written the same way."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **kwargs)
    return Path(path)


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An output folder that can be created: refuse a file in its place or in its parents with a
    one-line error (``mkdir`` would raise FileExistsError / NotADirectoryError tracebacks)."""
    from . import CLIError

    out = Path(path)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                where = "is a file" if p == out else f"is under the file {str(p)!r}"
                raise CLIError(f"{flag}: {str(out)!r} {where}; expected a folder")
            break
    return out


def check_out_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An output file whose folder can be created (no file among its parents) and that is not
    an existing folder."""
    from . import CLIError

    out = Path(path)
    if out.is_dir():
        raise CLIError(f"{flag}: {str(out)!r} is a folder; expected a file name")
    for p in out.parents:
        if p.exists():
            if not p.is_dir():
                raise CLIError(f"{flag}: {str(out)!r} is under the file {str(p)!r}; expected a folder there")
            break
    return out


def first_missing(path: str | os.PathLike | None) -> Path | None:
    """The outermost folder a command writing to ``path`` would create (``path`` itself or one of
    its parents), or None when ``path`` exists or is not given."""
    if path is None:
        return None
    top = None
    for p in (Path(path), *Path(path).parents):
        if os.path.lexists(p):
            break
        top = p
    return top


def remove_if_empty(top: Path | None) -> None:
    """After a failed command: remove the folders it created under ``top`` when they hold nothing
    but other empty folders and the run lock, so a refusal leaves no empty --out behind. Files
    are kept: a partial result (a training state to resume) is the user's to judge."""
    if top is None or top.is_symlink() or not top.is_dir():
        return
    for dirpath, _dirs, filenames in os.walk(top, topdown=False):
        here = Path(dirpath)
        if filenames == [".lock"]:
            (here / ".lock").unlink(missing_ok=True)
        try:
            here.rmdir()  # fails, as it should, on a folder that still holds something
        except OSError:
            pass
