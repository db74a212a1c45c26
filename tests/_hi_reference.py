"""An independent plain-numpy hi-toy-v1 likelihood and its grid posterior, for tests of the models.

Written from the hi-toy-v1 specification in ``bayessky.families.hi_toy``'s docstring (not from
its torch code): ``g = log10(map) - 8`` is a Gaussian field on an N x N box of side 25 Mpc/h with
per-mode spectrum ``S(k) = sigma_8^2 shape(k) / norm + 0.01``, ``shape(k) = (|k|/k_f) T(|k|/Gamma)^2``
(BBKS T, Gamma = 0.6711 Omega_m, k_f = 2 pi / L), ``norm = mean_k shape(k) exp(-|k|^2)`` over the
full DFT grid, and ``log p = -1/2 sum_k |fft2(g)_k|^2 / (N^2 S_k) - 1/2 sum_k log(2 pi S_k)``.
"""

from __future__ import annotations

import numpy as np

BOX_MPC = 25.0
BOUNDS = {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0)}


def _bbks(q: np.ndarray) -> np.ndarray:
    qs = np.where(q > 0, q, 1.0)
    t = (np.log(1 + 2.34 * qs) / (2.34 * qs)
         * (1 + 3.89 * qs + (16.1 * qs) ** 2 + (5.46 * qs) ** 3 + (6.71 * qs) ** 4) ** -0.25)
    return np.where(q > 0, t, 1.0)


def spectrum(n: int, om: float, s8: float) -> np.ndarray:
    k1 = 2 * np.pi * np.fft.fftfreq(n, BOX_MPC / n)
    k = np.hypot(k1[:, None], k1[None, :])
    shape = (k / (2 * np.pi / BOX_MPC)) * _bbks(k / (0.6711 * om)) ** 2
    norm = np.mean(shape * np.exp(-(k**2)))
    return s8**2 * shape / norm + 0.01


def log_likelihood(linear_map: np.ndarray, om: float, s8: float) -> float:
    g = np.log10(np.asarray(linear_map, dtype=np.float64)) - 8.0
    s = spectrum(g.shape[0], om, s8)
    power = np.abs(np.fft.fft2(g)) ** 2 / g.size
    return float(-0.5 * np.sum(power / s) - 0.5 * np.sum(np.log(2 * np.pi * s)))


def cell_centres(n: int) -> dict[str, np.ndarray]:
    return {k: lo + (np.arange(n) + 0.5) * (hi - lo) / n for k, (lo, hi) in BOUNDS.items()}


def grid_posterior(linear_map: np.ndarray, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(cell centres, normalised weights (n, n) over (Omega_m, sigma_8)): flat prior, equal cells."""
    ax = cell_centres(n)
    ll = np.array([[log_likelihood(linear_map, om, s8) for s8 in ax["sigma_8"]] for om in ax["Omega_m"]])
    w = np.exp(ll - ll.max())
    return ax, w / w.sum()


def grid_moments(linear_map: np.ndarray, n: int) -> dict[str, tuple[float, float]]:
    """``{name: (mean, std)}`` of the grid posterior's marginals."""
    ax, w = grid_posterior(linear_map, n)
    out = {}
    for i, name in enumerate(("Omega_m", "sigma_8")):
        m = w.sum(axis=1 - i)
        mean = float(m @ ax[name])
        out[name] = (mean, float(np.sqrt(m @ (ax[name] - mean) ** 2)))
    return out
