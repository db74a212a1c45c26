"""Independent reference for stationary fields: the dense pixel covariance of a per-mode spectrum."""

import numpy as np


def dense_covariance(s: np.ndarray) -> np.ndarray:
    """C_ij = (1/N) sum_k S_k cos(k.(x_i - x_j)) for a spectrum s (ny, nx) on numpy's fft2 grid,
    by explicit loops over pixel pairs (no FFT), shape (ny*nx, ny*nx)."""
    ny, nx = s.shape
    n = ny * nx
    ky = 2 * np.pi * np.arange(ny)[:, None] / ny
    kx = 2 * np.pi * np.arange(nx)[None, :] / nx
    c = np.empty((n, n))
    for a in range(n):
        ya, xa = divmod(a, nx)
        for b in range(a, n):
            yb, xb = divmod(b, nx)
            c[a, b] = c[b, a] = np.sum(s * np.cos(ky * (ya - yb) + kx * (xa - xb))) / n
    return c
