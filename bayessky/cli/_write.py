"""Atomic writes of the command-line outputs: an interrupted run leaves the old file or none,
never a truncated ``posterior.nc`` that ArviZ would half-read."""

from __future__ import annotations

import os
from pathlib import Path

from .._atomic import atomic_path


def write_netcdf(idata, path: str | os.PathLike) -> Path:
    """``idata.to_netcdf`` through :func:`bayessky._atomic.atomic_path`."""
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))
    return Path(path)


def write_csv(table, path: str | os.PathLike, **kwargs) -> Path:
    """``table.to_csv`` (a pandas DataFrame) written the same way."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **kwargs)
    return Path(path)
