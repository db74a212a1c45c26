"""One-point statistics: the pixel histogram (PDF) of maps."""

from __future__ import annotations

import numpy as np
import torch

from ._io import like_input, to_tensor

__all__ = ["pixel_pdf"]


def pixel_pdf(maps, bins: int | np.ndarray | torch.Tensor = 50, range: tuple[float, float] | None = None,
              *, density: bool = True):
    """Histogram of pixel values, one per map of a batch (..., ny, nx).

    Arguments:
        maps: (ny, nx) or (..., ny, nx), numpy or torch.
        bins: number of equal bins or explicit increasing edges (as ``numpy.histogram``).
        range: (low, high) for integer ``bins``; defaults to the min and max over the whole batch,
            so every map shares the same edges. Values outside the edges are ignored.
        density: normalise each map's histogram to unit integral (as ``numpy.histogram``);
            otherwise return counts.

    Returns:
        ``(centres, pdf)``: bin centres (nbins,) and values (..., nbins); the last bin is closed
        on the right, the others half-open, exactly as ``numpy.histogram``.
    """
    t, is_numpy = to_tensor(maps, "maps")
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise ValueError(f"bins: must be >= 1, got {bins}")
        lo, hi = (float(t.min()), float(t.max())) if range is None else (float(range[0]), float(range[1]))
        if not lo < hi:
            lo, hi = lo - 0.5, hi + 0.5  # constant maps: numpy's convention
        edges = torch.linspace(lo, hi, int(bins) + 1, dtype=t.dtype, device=t.device)
    else:
        edges = torch.as_tensor(np.asarray(bins, dtype=float) if not isinstance(bins, torch.Tensor) else bins,
                                dtype=t.dtype, device=t.device)
        if edges.ndim != 1 or len(edges) < 2 or not bool((edges[1:] > edges[:-1]).all()):
            raise ValueError("bins: expected an int or increasing 1-D bin edges")
    nb = len(edges) - 1
    flat = t.reshape(*t.shape[:-2], -1)
    idx = torch.bucketize(flat, edges, right=True) - 1
    idx = torch.where(flat == edges[-1], torch.full_like(idx, nb - 1), idx)  # closed last bin
    valid = (idx >= 0) & (idx < nb)
    idx = torch.where(valid, idx, torch.full_like(idx, nb))
    counts = torch.zeros(*flat.shape[:-1], nb + 1, dtype=t.dtype, device=t.device)
    counts = counts.scatter_add_(-1, idx, torch.ones_like(flat))[..., :nb]
    if density:
        widths = edges[1:] - edges[:-1]
        counts = counts / (counts.sum(-1, keepdim=True) * widths)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return like_input(is_numpy, centres, counts)
