"""Atomic figure writing (temporary file + rename), shared by every plot function."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

from ..atomic import atomic_path

matplotlib.use("Agg", force=False)  # headless by default; an interactive backend set by the user wins

__all__ = ["savefig"]


def savefig(fig, path: str | os.PathLike, dpi: int = 120, close: bool = False) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:  # the suffix is kept: savefig picks the format from it
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def maybe_save(fig, out):
    if out is not None:
        savefig(fig, out)
    return fig
