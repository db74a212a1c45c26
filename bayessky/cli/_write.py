"""Atomic writes of the command-line outputs: an interrupted run leaves the old file or none,
never a truncated ``posterior.nc`` that ArviZ would half-read."""

from __future__ import annotations

import os
from pathlib import Path


def write_netcdf(idata, path: str | os.PathLike) -> Path:
    """``idata.to_netcdf`` through a temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    idata.to_netcdf(str(tmp))
    tmp.replace(path)
    return path


def write_csv(table, path: str | os.PathLike, **kwargs) -> Path:
    """``table.to_csv`` (a pandas DataFrame) written the same way."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, **kwargs)
    tmp.replace(path)
    return path
