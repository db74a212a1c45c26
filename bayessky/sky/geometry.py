"""Flat periodic pixel geometry: k / multipole grids, FFT convention, spectra on the grid.

One convention is used throughout bayessky (it is numpy's unnormalised DFT, the one the synthetic
families of :mod:`bayessky.families` are specified in):

    X_k = sum_x x(x) exp(-i k.x),     E|X_k|^2 = N_pix * S(k),

so ``S(k)`` is the *per-mode spectrum*: the variance each DFT mode contributes per pixel, and the
pixel variance is ``mean_k S(k)``. It relates to a physical spectrum through the pixel area:

    S(k) = C_ell / Omega_pix        (sky patch, C_ell in map-units^2 sr, Omega_pix in sr)
    S(k) = P(k) / A_pix             (2-D simulation slice, P(k) in (Mpc/h)^2, A_pix in (Mpc/h)^2)

because the flat-sky pixel variance is (1/A) sum_l C_l = mean_l C_l / Omega_pix.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from .._validate import as_count, as_tensor, check_finite, check_map, check_memory, check_positive

__all__ = ["FlatGeometry", "fft2", "ifft2", "rfft2", "irfft2", "hartley2", "rfft_weights", "ARCMIN", "DEGREE"]


def _grid_shape(n, name: str, min_side: int = 1) -> tuple[int, int]:
    """``n`` or ``(ny, nx)`` as a pair of ints >= ``min_side``.

    A string is refused up front: iterating '88' would give (8, 8) and '16' (1, 6).
    """
    if isinstance(n, (str, bytes)) or n is None:
        raise TypeError(f"{name}: expected an int or (ny, nx), got {type(n).__name__} {n!r}")
    if np.ndim(n) == 0:
        side = as_count(n, name)
        shape = (side, side)
    else:
        values = list(n.tolist() if isinstance(n, (np.ndarray, torch.Tensor)) else n)
        if len(values) != 2:
            raise ValueError(f"{name}: expected an int or (ny, nx), got {n!r}")
        shape = (as_count(values[0], name), as_count(values[1], name))
    if min(shape) < min_side:
        raise ValueError(f"{name}: need at least {min_side} pixel{'s' if min_side > 1 else ''} per side, "
                         f"got {shape}")
    return shape

ARCMIN = math.pi / (180.0 * 60.0)  # radians per arcminute
DEGREE = math.pi / 180.0

_ANGLE_UNITS = {"arcmin": ARCMIN, "deg": DEGREE, "degree": DEGREE, "rad": 1.0, "radian": 1.0}
_LENGTH_UNITS = {"Mpc/h": 1.0, "pixel": 1.0}


def fft2(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised 2-D DFT over the last two axes (numpy convention)."""
    return torch.fft.fft2(x)


def ifft2(xk: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2` (carries the 1/N_pix)."""
    return torch.fft.ifft2(xk)


def rfft2(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised real 2-D DFT over the last two axes, shape (..., ny, nx//2 + 1)."""
    return torch.fft.rfft2(x)


def irfft2(xk: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`rfft2`; ``shape`` = (ny, nx) resolves the odd/even ambiguity."""
    return torch.fft.irfft2(xk, s=shape)


def rfft_weights(ny: int, nx: int, *, device=None, dtype=torch.float64) -> torch.Tensor:
    """Multiplicity (1 or 2) of each mode of the rfft half plane (ny, nx//2+1) in the full DFT.

    Columns 0 and (even nx) nx/2 are their own mirror images; every other column also stands for
    its conjugate partner. So, for real x, summing ``w * |rfft2(x)|^2`` equals summing
    ``|fft2(x)|^2`` over all modes, and ``w.sum() == ny * nx``.
    """
    w = torch.full((ny, nx // 2 + 1), 2.0, dtype=dtype, device=device)
    w[:, 0] = 1.0
    if nx % 2 == 0:
        w[:, -1] = 1.0
    return w


def hartley2(x: torch.Tensor) -> torch.Tensor:
    r"""Orthonormal 2-D discrete Hartley transform over the last two axes:
    ``H x = Re(F x) - Im(F x)`` with ``F = fft2(., norm="ortho")``.

    Real, orthogonal and an involution (``H H = 1``). A circulant with an even per-mode spectrum,
    ``S(k) = S(-k)``, is diagonal in this real basis: ``C x = H(S * H(x))``; so ``H(sqrt(S) u)``
    with white ``u`` is a real Gaussian field of spectrum ``S`` (a whitened parametrisation).
    """
    X = torch.fft.fft2(x, norm="ortho")
    return X.real - X.imag


class FlatGeometry:
    r"""A periodic flat grid of ``ny x nx`` pixels of side ``pixel_size`` (in ``unit``).

    Arguments:
        n: pixels per side, or ``(ny, nx)`` for a rectangular grid.
        pixel_size: side of a pixel in ``unit``.
        unit: ``"arcmin"``, ``"deg"`` or ``"rad"`` for sky patches (wavenumbers are multipoles
            ell, in rad^-1), ``"Mpc/h"`` for simulation boxes (wavenumbers in h/Mpc), or ``"pixel"``
            (wavenumbers in rad per pixel).

    Wavenumbers follow ``k = 2 pi fftfreq(n, d)`` on each axis, so for a sky patch |k| is the
    flat-sky multipole ell and for a box it is the comoving wavenumber.

    Example:
        >>> g = FlatGeometry(64, 2.0)           # 64 x 64 pixels of 2 arcmin
        >>> round(g.ell_max)                     # Nyquist along an axis
        5400
        >>> FlatGeometry(64, 25 / 64, unit="Mpc/h").k_fundamental  # 2 pi / 25
        0.25132741228718347
    """

    def __init__(self, n: int | tuple[int, int], pixel_size: float, unit: str = "arcmin"):
        shape = _grid_shape(n, "n", min_side=2)
        # one complex128 Fourier grid of this shape is the least any operator on it allocates
        check_memory(16 * shape[0] * shape[1], "n")
        if isinstance(pixel_size, (bool, str, bytes)) or np.ndim(pixel_size) != 0:
            raise TypeError(f"pixel_size: expected a real number, got {type(pixel_size).__name__} "
                            f"{pixel_size!r}")
        try:
            pixel_size = float(pixel_size)
        except (TypeError, ValueError) as err:
            raise TypeError(f"pixel_size: expected a real number, got {type(pixel_size).__name__}") from err
        check_positive(pixel_size, "pixel_size")
        if unit not in _ANGLE_UNITS and unit not in _LENGTH_UNITS:
            known = sorted(list(_ANGLE_UNITS) + list(_LENGTH_UNITS))
            raise ValueError(f"unit: expected one of {known}, got {unit!r}")
        self.shape: tuple[int, int] = shape
        self.pixel_size = float(pixel_size)
        self.unit = unit
        # dx in the natural unit of the wavenumbers: radians for the sky, Mpc/h for boxes.
        self.dx = self.pixel_size * _ANGLE_UNITS.get(unit, _LENGTH_UNITS.get(unit, 1.0))

    # -- sizes ------------------------------------------------------------------------------
    @property
    def ny(self) -> int:
        return self.shape[0]

    @property
    def nx(self) -> int:
        return self.shape[1]

    @property
    def npix(self) -> int:
        return self.ny * self.nx

    @property
    def is_sky(self) -> bool:
        return self.unit in _ANGLE_UNITS

    @property
    def pixel_area(self) -> float:
        """Pixel area in sr (sky) or (Mpc/h)^2 (box)."""
        return self.dx * self.dx

    @property
    def area(self) -> float:
        return self.pixel_area * self.npix

    @property
    def side_lengths(self) -> tuple[float, float]:
        """(Ly, Lx) in radians (sky) or Mpc/h (box)."""
        return (self.ny * self.dx, self.nx * self.dx)

    @property
    def k_fundamental(self) -> float:
        """2 pi / L along the longer side: the lowest non-zero wavenumber."""
        return 2 * math.pi / (max(self.shape) * self.dx)

    @property
    def ell_max(self) -> float:
        """Nyquist wavenumber along an axis, pi / dx."""
        return math.pi / self.dx

    def __repr__(self) -> str:
        return f"FlatGeometry({self.shape}, pixel_size={self.pixel_size}, unit={self.unit!r})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, FlatGeometry) and self.shape == other.shape
                and math.isclose(self.dx, other.dx, rel_tol=1e-12))

    def __hash__(self) -> int:
        return hash((self.shape, round(self.dx, 15)))

    # -- wavenumber grids ---------------------------------------------------------------------
    def k_vectors(self, rfft: bool = False, *, device=None, dtype=torch.float64):
        """(ky, kx) grids of shape (ny, nx) or (ny, nx//2+1), in rad^-1 (sky) or h/Mpc (box)."""
        ky = 2 * math.pi * torch.fft.fftfreq(self.ny, d=self.dx, dtype=dtype, device=device)
        if rfft:
            kx = 2 * math.pi * torch.fft.rfftfreq(self.nx, d=self.dx, dtype=dtype, device=device)
        else:
            kx = 2 * math.pi * torch.fft.fftfreq(self.nx, d=self.dx, dtype=dtype, device=device)
        return torch.meshgrid(ky, kx, indexing="ij")

    def k_grid(self, rfft: bool = False, *, device=None, dtype=torch.float64) -> torch.Tensor:
        """|k| on the DFT grid: multipole ell for sky patches, h/Mpc for boxes."""
        ky, kx = self.k_vectors(rfft, device=device, dtype=dtype)
        return torch.sqrt(kx * kx + ky * ky)

    ell = k_grid

    def rfft_weights(self, *, device=None, dtype=torch.float64) -> torch.Tensor:
        """:func:`rfft_weights` of this grid, shape (ny, nx//2+1)."""
        return rfft_weights(self.ny, self.nx, device=device, dtype=dtype)

    # -- spectra --------------------------------------------------------------------------------
    def per_mode_spectrum(
        self,
        spectrum: Callable[[torch.Tensor], torch.Tensor] | tuple,
        rfft: bool = False,
        *,
        device=None,
        dtype=torch.float64,
    ) -> torch.Tensor:
        """Per-mode spectrum S(k) = C(|k|) / pixel_area on the DFT grid.

        Arguments:
            spectrum: a callable of |k| returning C_ell (sky, map-units^2 sr) or P(k) (box), or a
                pair ``(k, C)`` of 1-D arrays, interpolated linearly in k (zero outside).
            rfft: return the half-plane grid used with :func:`rfft2`.

        Returns:
            Tensor (ny, nx) or (ny, nx//2+1).
        """
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating dtype, got {dtype}")
        k = self.k_grid(rfft, device=device, dtype=dtype)
        if callable(spectrum):
            c = as_tensor(spectrum(k), "spectrum", dtype=dtype, device=device)
            # A callable returning (3,) or a scalar would otherwise broadcast into a wrong-shaped
            # or 0-d "spectrum"; a constant is fine and is spread over the grid.
            try:
                c = torch.broadcast_to(c, k.shape)
            except RuntimeError:
                raise ValueError(f"spectrum: the callable returned shape {tuple(c.shape)}, expected one "
                                 f"broadcastable to the |k| grid {tuple(k.shape)}") from None
        elif isinstance(spectrum, (tuple, list)) and len(spectrum) == 2:
            kk, cc = spectrum
            kk = np.asarray(kk, dtype=float)
            cc = np.asarray(cc, dtype=float)
            if kk.ndim != 1 or kk.shape != cc.shape or kk.size == 0:
                raise ValueError(
                    f"spectrum: expected two non-empty 1-D arrays of equal length, got {kk.shape}, {cc.shape}"
                )
            check_finite(torch.as_tensor(np.stack([kk, cc])), "spectrum")
            c = torch.as_tensor(
                np.interp(k.cpu().numpy(), kk, cc, left=0.0, right=0.0), dtype=dtype, device=device
            )
        else:
            raise TypeError(f"spectrum: expected a callable or a pair (k, C), got {type(spectrum).__name__}")
        check_finite(c, "spectrum")
        return c / self.pixel_area

    def power_spectrum(
        self,
        maps: torch.Tensor,
        bins: int | torch.Tensor | np.ndarray = 20,
        maps2: torch.Tensor | None = None,
        *,
        per_mode: bool = False,
    ):
        """Binned auto (or cross) power spectrum of maps (..., ny, nx), batched on any device.

        Returns ``(k_centres, power, counts)`` with ``power`` of shape (..., nbins): C_ell in
        map-units^2 sr (sky) or P(k) in (Mpc/h)^2 (box); with ``per_mode=True`` the per-mode S(k)
        instead. ``bins`` is a number of linear bins from k_fundamental / 2 (so only k = 0 is
        left out) to the corner of the grid, or explicit bin edges. Empty bins give NaN.
        ``k_centres`` is the mean |k| of the modes in each bin.
        """
        maps = check_map(maps, "maps", shape=self.shape)
        dtype = maps.dtype if maps.is_floating_point() else torch.get_default_dtype()
        maps = maps.to(dtype)
        xk = fft2(maps)
        if maps2 is not None:
            maps2 = check_map(maps2, "maps2", shape=self.shape).to(dtype=dtype, device=maps.device)
            try:
                torch.broadcast_shapes(maps.shape, maps2.shape)
            except RuntimeError:
                raise ValueError(f"maps2: batch shape {tuple(maps2.shape[:-2])} does not broadcast with "
                                 f"maps' {tuple(maps.shape[:-2])}") from None
            p2d = (xk * fft2(maps2).conj()).real
        else:
            p2d = xk.real**2 + xk.imag**2
        p2d = p2d / self.npix
        if not per_mode:
            p2d = p2d * self.pixel_area
        k = self.k_grid(device=maps.device, dtype=dtype)
        if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
            if bins < 1:  # 0 would return empty arrays, a negative count a raw linspace error
                raise ValueError(f"bins: expected at least 1 bin, got {bins}")
            # half a fundamental beyond the grid corner: a relative margin would vanish in float32
            edges = torch.linspace(self.k_fundamental * 0.5, float(k.max()) + 0.5 * self.k_fundamental,
                                   int(bins) + 1, dtype=dtype, device=maps.device)
        else:
            edges = torch.as_tensor(np.asarray(bins, dtype=float), dtype=dtype, device=maps.device)
            if edges.ndim != 1 or len(edges) < 2 or not bool((edges[1:] > edges[:-1]).all()):
                raise ValueError("bins: expected an int or increasing 1-D bin edges")
        nb = len(edges) - 1
        idx = torch.bucketize(k.reshape(-1), edges, right=True) - 1
        valid = (idx >= 0) & (idx < nb)
        idx = torch.where(valid, idx, torch.full_like(idx, nb))  # overflow bin, dropped below
        counts = torch.zeros(nb + 1, dtype=dtype, device=maps.device).index_add_(
            0, idx, torch.ones_like(idx, dtype=dtype)
        )
        ksum = torch.zeros(nb + 1, dtype=dtype, device=maps.device).index_add_(0, idx, k.reshape(-1))
        flat = p2d.reshape(*p2d.shape[:-2], -1)
        psum = torch.zeros(*flat.shape[:-1], nb + 1, dtype=dtype, device=maps.device)
        psum = psum.index_add_(-1, idx, flat)
        counts, ksum, psum = counts[:nb], ksum[:nb], psum[..., :nb]
        with torch.no_grad():
            kc = ksum / counts
        return kc, psum / counts, counts
