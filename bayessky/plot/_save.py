"""Atomic figure writing (temporary file + rename), shared by every plot function."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # headless by default; an interactive backend set by the user wins

__all__ = ["savefig"]


def savefig(fig, path: str | os.PathLike, dpi: int = 120, close: bool = False) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix, prefix=".tmp-")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def maybe_save(fig, out):
    if out is not None:
        savefig(fig, out)
    return fig
