"""Peak statistics: local maxima, peak counts, stacked peaks and radial profiles.

A peak is a pixel strictly higher than its 8 neighbours (periodic wrap by default). Seed 003
(chapter 6) validates generative models with the mean of 21 x 21 cut-outs centred on such
peaks and its radial profile; peak counts above thresholds are the usual weak-lensing summary.
"""

from __future__ import annotations

import numpy as np
import torch

from ._io import like_input, to_tensor

__all__ = ["peak_mask", "find_peaks", "peak_counts", "stacked_peaks", "radial_profile"]


def _peak_mask(u: torch.Tensor, periodic: bool) -> torch.Tensor:
    mask = torch.ones_like(u, dtype=torch.bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                mask &= u > torch.roll(u, shifts=(dy, dx), dims=(-2, -1))
    if not periodic:
        mask[..., 0, :] = mask[..., -1, :] = False
        mask[..., :, 0] = mask[..., :, -1] = False
    return mask


def peak_mask(maps, *, periodic: bool = True):
    """Boolean map (..., ny, nx), True on pixels strictly above all 8 neighbours.

    With ``periodic=False`` neighbours do not wrap and border pixels are never peaks.
    """
    u, is_numpy = to_tensor(maps, "maps")
    return like_input(is_numpy, _peak_mask(u, periodic))


def find_peaks(image, threshold: float | None = None, *, periodic: bool = True):
    """Peaks of one map (ny, nx): ``(rows, cols, heights)`` sorted by decreasing height.

    Only peaks with height > ``threshold`` are kept (all if None).
    """
    u, is_numpy = to_tensor(image, "image")
    if u.ndim != 2:
        raise ValueError(f"image: expected one map (ny, nx), got shape {tuple(u.shape)}; use peak_mask")
    mask = _peak_mask(u, periodic)
    if threshold is not None:
        mask &= u > threshold
    rows, cols = mask.nonzero(as_tuple=True)
    heights = u[rows, cols]
    order = torch.argsort(heights, descending=True)
    return like_input(is_numpy, rows[order], cols[order], heights[order])


def peak_counts(maps, thresholds, *, differential: bool = False, periodic: bool = True):
    """Number of peaks per map above each threshold, or in threshold bins.

    Arguments:
        maps: (ny, nx) or (..., ny, nx), numpy or torch.
        thresholds: (T,) increasing levels in map units.
        differential: if False, N(height > nu_i) for each threshold, shape (..., T); if True the
            thresholds are bin edges and the result counts heights in [nu_i, nu_{i+1}), (..., T-1).

    Returns:
        Counts as floats, numpy or torch like ``maps``.
    """
    u, is_numpy = to_tensor(maps, "maps")
    thr = torch.as_tensor(np.asarray(thresholds, dtype=float) if not isinstance(thresholds, torch.Tensor)
                          else thresholds, dtype=u.dtype, device=u.device).reshape(-1)
    if len(thr) > 1 and not bool((thr[1:] > thr[:-1]).all()):
        raise ValueError("thresholds: must be strictly increasing")
    flat = u.reshape(-1, u.shape[-2] * u.shape[-1])
    b, i = _peak_mask(u, periodic).reshape(flat.shape).nonzero(as_tuple=True)
    heights = flat[b, i][:, None]  # only the peaks: memory ~ n_peaks x T, not pixels x T

    def count(hit):
        out = torch.zeros(flat.shape[0], len(thr), dtype=u.dtype, device=u.device)
        return out.index_add_(0, b, hit.to(u.dtype)).reshape(*u.shape[:-2], len(thr))

    if differential:
        at_least = count(heights >= thr)
        above = at_least[..., :-1] - at_least[..., 1:]
    else:
        above = count(heights > thr)
    return like_input(is_numpy, above)


def stacked_peaks(maps, size: int = 21, threshold: float | None = None, *, periodic: bool = True):
    """Mean of ``size x size`` cut-outs centred on every peak of every map (the stacked-peak
    statistic of Goel, "Understanding Machine Learning Generative Models - GANs and VAEs", ch. 6).

    Arguments:
        maps: (ny, nx) or (..., ny, nx); peaks of all maps are stacked together.
        size: odd side of the cut-out in pixels (21 in that chapter).
        threshold: keep peaks with height > threshold (all if None).
        periodic: cut-outs wrap around the edges; otherwise peaks whose cut-out would leave the
            map are skipped.

    Returns:
        ``(stack, n_peaks)``: the mean cut-out (size, size), centre at (size // 2, size // 2), and
        the number of peaks stacked (stack is all-NaN when there are none).
    """
    u, is_numpy = to_tensor(maps, "maps")
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"size: expected an odd positive integer, got {size!r}")
    size = int(size)
    flat = u.reshape(-1, *u.shape[-2:])
    ny, nx = flat.shape[-2:]
    if size > min(ny, nx):
        raise ValueError(f"size: must not exceed the map side {min(ny, nx)}, got {size}")
    mask = _peak_mask(flat, periodic)
    if threshold is not None:
        mask &= flat > threshold
    h = size // 2
    if not periodic:
        mask[..., :h, :] = mask[..., ny - h:, :] = False
        mask[..., :, :h] = mask[..., :, nx - h:] = False
    b, r, c = mask.nonzero(as_tuple=True)
    off = torch.arange(-h, h + 1, device=u.device)
    rows = (r[:, None] + off) % ny
    cols = (c[:, None] + off) % nx
    cut = flat[b[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n_peaks, size, size)
    n = len(b)
    stack = cut.mean(0) if n else torch.full((size, size), torch.nan, dtype=u.dtype, device=u.device)
    return like_input(is_numpy, stack), n


def radial_profile(image, centre: tuple[float, float] | None = None, bin_width: float = 1.0,
                   r_max: float | None = None):
    """Azimuthal average of image(s) (..., ny, nx) in annuli around ``centre``.

    Bin ``i`` holds pixels at distance r (pixel centres, in pixels) with
    ``(i - 1/2) w <= r < (i + 1/2) w`` (the first bin is [0, w/2): the centre pixel alone for
    w = 1), up to ``r_max`` (default: half the shorter side, the largest complete annulus).

    Arguments:
        centre: (row, col) in pixels; default the image centre ((ny-1)/2, (nx-1)/2), which is the
            peak pixel of a :func:`stacked_peaks` stack.

    Returns:
        ``(r, profile)``: mean distance of the pixels in each bin (nbins,) and the mean value
        (..., nbins); numpy or torch like ``image``. Empty bins (the first one of an even-sized
        image centred between pixels) give NaN.
    """
    u, is_numpy = to_tensor(image, "image")
    ny, nx = u.shape[-2:]
    cy, cx = ((ny - 1) / 2, (nx - 1) / 2) if centre is None else (float(centre[0]), float(centre[1]))
    if not bin_width > 0:
        raise ValueError(f"bin_width: must be > 0, got {bin_width!r}")
    r_max = min(ny, nx) / 2 if r_max is None else float(r_max)
    yy = torch.arange(ny, dtype=u.dtype, device=u.device)[:, None] - cy
    xx = torch.arange(nx, dtype=u.dtype, device=u.device)[None, :] - cx
    r = torch.sqrt(yy * yy + xx * xx).reshape(-1)
    idx = torch.floor(r / bin_width + 0.5).long()
    nb = int(np.floor(r_max / bin_width + 0.5))
    keep = idx < nb
    idx = torch.where(keep, idx, torch.full_like(idx, nb))
    counts = torch.zeros(nb + 1, dtype=u.dtype, device=u.device).index_add_(0, idx, torch.ones_like(r))
    rsum = torch.zeros(nb + 1, dtype=u.dtype, device=u.device).index_add_(0, idx, r)
    flat = u.reshape(*u.shape[:-2], -1)
    psum = torch.zeros(*flat.shape[:-1], nb + 1, dtype=u.dtype, device=u.device).index_add_(-1, idx, flat)
    counts, rsum, psum = counts[:nb], rsum[:nb], psum[..., :nb]
    return like_input(is_numpy, rsum / counts, psum / counts)
