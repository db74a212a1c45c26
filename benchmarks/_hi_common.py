"""Shared pieces of the hi-toy-v1 benchmarks: grid-posterior metrics and fidelity statistics.

Grid posteriors here live on an evenly spaced cell-centre grid over a box with a uniform prior,
so a posterior is fully described by its normalised log weights ``log w`` of shape
(M, n_1, n_2) (M maps), ``sum w = 1`` per map. The metrics:

- ``discrete_kl``: KL(p || q) = sum_j p_j (log p_j - log q_j) over grid cells (nats), computed
  from log weights so a learned posterior that underflows where the exact one has mass gives a
  large finite number instead of ``inf``;
- ``central_interval``: the equal-tailed interval of a 1-D marginal, treating each cell's mass as
  spread uniformly over the cell (piecewise-linear CDF over cell edges);
- ``hpd_contains``: whether a cell lies in the highest-posterior-density region of mass >= level
  (cells sorted by weight, smallest set reaching the level; ties at the threshold included), the
  rule of :meth:`bayessky.infer.GridPosterior.credible_region`;
- ``grid_summary``: posterior means, stds and coverage flags for a stack of posteriors and truths.

Everything is numpy (float64); these are small post-processing arrays.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "REPO", "BOX", "cell_axes", "normalise_log_weights", "discrete_kl",
    "central_interval", "hpd_threshold", "hpd_contains", "cell_index", "grid_summary", "coverage", "rmse",
    "max_rel_dev", "binomial_se", "git_commit", "write_json",
]

REPO = Path(__file__).resolve().parents[1]
# the hi-toy-v1 prior box (bayessky.families.hi_toy.prior_bounds, the CAMELS LH ranges), written out
# so these numpy metrics need no torch; hi_vs_exact checks it against the model's grid
BOX = {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0)}


def cell_axes(n: int, box: Mapping[str, tuple[float, float]] = BOX) -> dict[str, np.ndarray]:
    """Cell centres ``lo + (i + 1/2)(hi - lo)/n`` of an n-per-axis grid over ``box`` (numpy)."""
    return {k: lo + (np.arange(n) + 0.5) * (hi - lo) / n for k, (lo, hi) in box.items()}


def _logsumexp(a: np.ndarray, axis) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def normalise_log_weights(log_joint: np.ndarray, ndim: int = 2) -> np.ndarray:
    """log w = log_joint - logsumexp over the last ``ndim`` axes (equal cells, flat prior)."""
    a = np.asarray(log_joint, dtype=float)
    a = np.where(np.isnan(a), -np.inf, a)
    axes = tuple(range(a.ndim - ndim, a.ndim))
    return a - np.expand_dims(_logsumexp(a, axes), axes)


def discrete_kl(log_p: np.ndarray, log_q: np.ndarray, ndim: int = 2) -> np.ndarray:
    r"""KL(p || q) = \sum_j p_j (\log p_j - \log q_j) in nats over the last ``ndim`` axes.

    Both arguments are NORMALISED log weights (see :func:`normalise_log_weights`); cells with
    p_j = 0 contribute nothing (0 log 0 = 0). Shape: leading (batch) dims of the inputs.
    """
    log_p, log_q = np.broadcast_arrays(np.asarray(log_p, float), np.asarray(log_q, float))
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (log_p - log_q), 0.0)
    return terms.sum(axis=tuple(range(terms.ndim - ndim, terms.ndim)))


def central_interval(values: np.ndarray, mass: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval holding ``level`` of a 1-D grid marginal.

    Arguments:
        values: evenly spaced cell centres (n,).
        mass: marginal mass per cell (..., n), summing to 1 over the last axis.
        level: credibility in (0, 1).

    Returns:
        (lo, hi), each of shape (...): the (1 - level)/2 and (1 + level)/2 quantiles of the
        density that is uniform within each cell (CDF linear between cell edges).
    """
    values = np.asarray(values, float)
    mass = np.asarray(mass, float)
    h = values[1] - values[0]
    edges = np.concatenate([values - h / 2, values[-1:] + h / 2])
    cdf = np.concatenate([np.zeros(mass.shape[:-1] + (1,)), np.cumsum(mass, -1)], -1)
    cdf = cdf / cdf[..., -1:]
    out = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        # first edge j with cdf_j >= q (cdf_0 = 0 < q), then linear between edges j-1 and j;
        # a zero-mass cell (flat CDF) is never the one the quantile falls in
        j = np.clip(np.sum(cdf < q, axis=-1), 1, len(edges) - 1)[..., None]
        c0, c1 = np.take_along_axis(cdf, j - 1, -1)[..., 0], np.take_along_axis(cdf, j, -1)[..., 0]
        e0 = edges[j[..., 0] - 1]
        frac = np.where(c1 > c0, (q - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0)
        out.append(e0 + frac * h)
    return out[0], out[1]


def hpd_threshold(weights: np.ndarray, level: float) -> np.ndarray:
    """Weight threshold of the HPD region of mass >= ``level``, per map.

    Arguments:
        weights: (M, *shape) normalised cell masses.
        level: credibility in (0, 1).

    Returns:
        (M,) thresholds t: the region ``{w >= t}`` is the smallest set of highest-weight cells
        whose mass reaches ``level`` (ties at t included).
    """
    w = np.asarray(weights, float)
    flat = w.reshape(w.shape[0], -1)
    srt = -np.sort(-flat, axis=1)
    cum = np.cumsum(srt, axis=1)
    # first sorted cell at which the cumulative mass reaches the level (searchsorted, per row)
    k = np.minimum(np.sum(cum < level * cum[:, -1:] - 1e-12, axis=1), flat.shape[1] - 1)
    return srt[np.arange(len(srt)), k]


def hpd_contains(weights: np.ndarray, index: np.ndarray, level: float) -> np.ndarray:
    """Whether cell ``index`` is inside the HPD region of mass >= ``level``, per map.

    Arguments:
        weights: (M, *shape) normalised cell masses.
        index: (M, d) integer cell indices (one cell per map; d = len(shape)).
        level: credibility in (0, 1).

    Returns:
        (M,) booleans: the cell's weight >= :func:`hpd_threshold`.
    """
    w = np.asarray(weights, float)
    idx = np.asarray(index, int)
    wt = w[(np.arange(w.shape[0]),) + tuple(idx[:, i] for i in range(idx.shape[1]))]
    return wt >= hpd_threshold(w, level)


def cell_index(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the cell (centre ``values``, evenly spaced) containing each ``x``; clipped to the grid."""
    values = np.asarray(values, float)
    h = values[1] - values[0]
    i = np.floor((np.asarray(x, float) - (values[0] - h / 2)) / h).astype(int)
    return np.clip(i, 0, len(values) - 1)


def grid_summary(axes: Mapping[str, np.ndarray], log_w: np.ndarray, truth: np.ndarray,
                 levels: Sequence[float] = (0.68, 0.95)) -> dict:
    """Means, stds and credible-region hits of a stack of 2-D (or d-D) grid posteriors.

    Arguments:
        axes: ``{name: cell centres}`` in axis order.
        log_w: (M, n_1, ..., n_d) normalised log weights.
        truth: (M, d) true parameters.
        levels: credibilities.

    Returns:
        dict with ``mean``, ``std`` ({name: (M,)}), ``in_interval`` ({name: {level: (M,) bool}},
        marginal central intervals), ``in_hpd`` ({level: (M,) bool}, joint region) as numpy.
    """
    names = list(axes)
    w = np.exp(np.asarray(log_w, float))
    d = len(names)
    truth = np.asarray(truth, float).reshape(w.shape[0], d)
    mean, std, inside = {}, {}, {}
    for i, k in enumerate(names):
        other = tuple(1 + j for j in range(d) if j != i)
        m = w.sum(axis=other)                      # (M, n_i)
        v = axes[k]
        mu = m @ v
        mean[k] = mu
        std[k] = np.sqrt(np.maximum(m @ v**2 - mu**2, 0.0))
        inside[k] = {}
        for q in levels:
            lo, hi = central_interval(v, m, q)
            inside[k][q] = (truth[:, i] >= lo) & (truth[:, i] <= hi)
    idx = np.stack([cell_index(axes[k], truth[:, i]) for i, k in enumerate(names)], -1)
    hpd = {q: hpd_contains(w, idx, q) for q in levels}
    return {"mean": mean, "std": std, "in_interval": inside, "in_hpd": hpd}


def coverage(hits: np.ndarray) -> float:
    """Fraction of True entries."""
    return float(np.mean(np.asarray(hits, bool)))


def binomial_se(p: float, n: int) -> float:
    """Standard error of a coverage fraction at nominal ``p`` from ``n`` independent maps."""
    return math.sqrt(p * (1 - p) / n)


def rmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error over maps."""
    e = np.asarray(estimate, float) - np.asarray(truth, float)
    return float(np.sqrt(np.mean(e**2)))


def max_rel_dev(a: np.ndarray, b: np.ndarray) -> float:
    """max over bins of |a / b - 1| (b the reference; NaN bins ignored)."""
    r = np.abs(np.asarray(a, float) / np.asarray(b, float) - 1.0)
    return float(np.nanmax(r))


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def write_json(result: dict, out_dir: str | Path | None, name: str) -> str:
    """JSON text of ``result`` (NaN/inf -> null), also written to ``out_dir/name`` if given."""
    from bayessky.atomic import atomic_write

    text = json.dumps(_jsonable(result), indent=2)
    if out_dir is not None:
        atomic_write(Path(out_dir) / name, (text + "\n").encode())  # the one atomic writer
    return text
