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
