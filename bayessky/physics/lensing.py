r"""Flat-sky CMB lensing: remap a map by the gradient of a lensing potential, differentiably.

Lensing moves the unlensed field ``f`` along the deflection :math:`\mathbf d = \nabla\phi`:

.. math:: \tilde f(\mathbf x) = f(\mathbf x + \nabla\phi(\mathbf x)).

Method (why this one). ``f`` is a band-limited periodic map, so the exact answer is its Fourier
series evaluated at the displaced points — a type-2 non-uniform DFT, O(N_pix^2) directly. We
evaluate it the way a non-uniform FFT does, with two cheap steps:

1. **Fourier oversampling.** The rfft of ``f`` is zero-padded to an ``s``-times finer grid
   (``oversample=s``; the even-size Nyquist mode split symmetrically so the result stays real
   and exact at the original pixels). This is exact band-limited interpolation onto the fine grid
   and divides every wavenumber, in fine-pixel units, by ``s``.
2. **Cubic B-spline interpolation** at :math:`\mathbf x + \mathbf d`, with the spline
   coefficients obtained exactly by dividing by the B-spline's DFT,
   :math:`B(w) = (2 + \cos w)/3` per axis, in the same Fourier step (periodic prefilter,
   Unser 1999). The interpolant passes through the samples, so ``phi = 0`` is the identity to
   rounding, and it is C^2 in the position, so gradients with respect to ``phi`` are smooth.

Accuracy. For a mode at ``w = ell * dx / s`` radians per fine pixel the spline reproduces the
amplitude :math:`A_0(w) = \mathrm{sinc}^4(w/2) / \sum_m \mathrm{sinc}^4((w + 2\pi m)/2)` on average
over sub-pixel offsets, the rest going to aliases at ``w + 2 pi m``. At ell = 2000 with 2' pixels
(w = 1.16 for s = 1) the lensed power would be low by 0.7 %; with the default ``s = 2``
(w = 0.58) by 0.03 %. Measured alternatives at the same ell: bicubic *convolution* without
prefilter changes the power by -4.0 % (Keys a = -0.5) or +2.7 % (a = -0.75, torch
``grid_sample``) at s = 1, and still -0.3 % / +1.8 % at s = 2; Taylor-series lensing needs
~(ell d)^n / n! terms, i.e. 6-8 orders of mixed derivatives (O(n^2) FFTs) at ell = 2000. Cost of
this method: one rfft at the map size, one irfft at ``s^2`` times the size, and 16 gathers per
output pixel, batched on any device (measured on one H100, batch of 64 maps of 256^2, float32:
0.08 ms per map forward, 0.16 ms forward + backward; 1024^2: 1.7 / 2.2 ms).
``tests/test_physics_lensing.py`` checks it against a brute-force Fourier series (error falls as
s^-4: 2e-5 of the rms at s = 8 for white noise) and checks the lensed power of Gaussian
realisations against an exact non-perturbative reference to < 0.3 % at 100 < ell < 2000
(statistical error 0.1 %).

References:
    M. Unser, "Splines: a perfect fit for signal and image processing", IEEE SPM 16 (1999).
    A. Lewis & A. Challinor, "Weak gravitational lensing of the CMB", Phys. Rep. 429 (2006),
    arXiv:astro-ph/0601594 (remapping, flat-sky lensed spectra).
"""

from __future__ import annotations

import math

import torch

from .._validate import check_map
from ..sky.geometry import FlatGeometry, irfft2, rfft2

__all__ = ["lens", "deflection", "remap"]


def _check_geometry(geometry, sky: bool = False) -> FlatGeometry:
    if not isinstance(geometry, FlatGeometry):
        raise TypeError(f"geometry: expected a FlatGeometry, got {type(geometry).__name__}")
    if sky and not geometry.is_sky:
        # the deflection is the gradient of phi per radian: on a box in Mpc/h it would be a
        # displacement in Mpc/h read as an angle, silently wrong by orders of magnitude
        raise ValueError(f"geometry: lensing needs an angular (sky) geometry, got unit {geometry.unit!r}")
    return geometry


def _floating(*tensors: torch.Tensor) -> torch.dtype:
    dtype = torch.promote_types(tensors[0].dtype, tensors[-1].dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def deflection(phi: torch.Tensor, geometry: FlatGeometry) -> torch.Tensor:
    r"""Deflection field :math:`\mathbf d = \nabla\phi` by spectral differentiation.

    Arguments:
        phi: lensing potential (..., ny, nx), dimensionless (radians^2 / radians^2: C_ell^phiphi
            convention), on ``geometry``.
        geometry: a sky :class:`~bayessky.sky.FlatGeometry`; derivatives are per radian.

    Returns:
        Tensor (..., 2, ny, nx): ``[..., 0]`` = d_x (along the last axis), ``[..., 1]`` = d_y
        (along axis -2), in radians. The Nyquist row/column of an even-sized grid, whose
        derivative is not real, is dropped.

    Example:
        >>> g = FlatGeometry(64, 2.0)
        >>> d = deflection(torch.zeros(3, 64, 64), g)
        >>> tuple(d.shape)
        (3, 2, 64, 64)
    """
    geometry = _check_geometry(geometry, sky=True)
    phi = check_map(phi, "phi", shape=geometry.shape)
    dtype = _floating(phi)
    phi = phi.to(dtype)
    ky, kx = geometry.k_vectors(rfft=True, device=phi.device, dtype=dtype)
    ny, nx = geometry.shape
    if ny % 2 == 0:
        ky = ky.clone()
        ky[ny // 2] = 0.0
    if nx % 2 == 0:
        kx = kx.clone()
        kx[:, nx // 2] = 0.0
    pk = rfft2(phi)
    dx = irfft2(1j * kx * pk, geometry.shape)
    dy = irfft2(1j * ky * pk, geometry.shape)
    return torch.stack([dx, dy], dim=-3)


def _spline_coefficients(f: torch.Tensor, s: int) -> torch.Tensor:
    """Cubic B-spline coefficients of ``f`` Fourier-upsampled ``s`` times, shape (..., s ny, s nx)."""
    ny, nx = f.shape[-2:]
    big_y, big_x = s * ny, s * nx
    fk = rfft2(f)
    if s > 1:
        g = fk.new_zeros(*fk.shape[:-2], big_y, big_x // 2 + 1)
        hy = ny // 2 + 1 if ny % 2 else ny // 2  # rows 0..hy-1 are the non-negative frequencies
        cx = nx // 2 + 1
        g[..., :hy, :cx] = fk[..., :hy, :]
        g[..., big_y - (ny - hy):, :cx] = fk[..., hy:, :]
        if ny % 2 == 0:  # split the Nyquist row between +ny/2 and -ny/2 so the result stays real
            g[..., ny // 2, :cx] = 0.5 * fk[..., ny // 2, :]
            g[..., big_y - ny // 2, :cx] = 0.5 * fk[..., ny // 2, :]
        if nx % 2 == 0:  # the Nyquist column now has an implicit conjugate partner: halve it
            g[..., :, nx // 2] = 0.5 * g[..., :, nx // 2]
        fk = g * (s * s)  # irfft2 divides by the fine pixel count
    rdtype = f.dtype
    wy = 2 * math.pi * torch.fft.fftfreq(big_y, device=f.device, dtype=rdtype)
    wx = 2 * math.pi * torch.fft.rfftfreq(big_x, device=f.device, dtype=rdtype)
    # DFT of the sampled cubic B-spline (1/6, 4/6, 1/6): dividing by it gives the coefficients whose
    # spline passes through the samples (exact periodic prefilter, never below 1/3).
    bspline = ((2 + torch.cos(wy)) / 3)[:, None] * ((2 + torch.cos(wx)) / 3)[None, :]
    return irfft2(fk / bspline, (big_y, big_x))


def _bspline_weights(t: torch.Tensor) -> list[torch.Tensor]:
    """Cubic B-spline weights for nodes i0-1, i0, i0+1, i0+2 at fractional offset t in [0, 1)."""
    t2 = t * t
    t3 = t2 * t
    u = 1 - t
    return [u * u * u / 6, (3 * t3 - 6 * t2 + 4) / 6, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6, t3 / 6]


def remap(f: torch.Tensor, d: torch.Tensor, geometry: FlatGeometry, *, oversample: int = 2) -> torch.Tensor:
    r"""Evaluate the band-limited periodic map ``f`` at ``x + d(x)`` (see the module notes).

    Arguments:
        f: maps (..., ny, nx) on ``geometry``.
        d: displacements (..., 2, ny, nx) as returned by :func:`deflection` (d_x, d_y), in the
            geometry's angle unit converted to radians (or Mpc/h for boxes); leading dimensions
            broadcast against those of ``f``.
        geometry: the :class:`~bayessky.sky.FlatGeometry` of ``f``.
        oversample: Fourier oversampling factor ``s`` >= 1 before cubic-spline interpolation;
            the error falls as ``s^-4`` (see module notes; 2 gives < 2e-4 amplitude at ell = 2000
            for 2' pixels).

    Returns:
        Tensor (broadcast(...), ny, nx), differentiable in ``f`` and ``d``.
    """
    geometry = _check_geometry(geometry)
    f = check_map(f, "f", shape=geometry.shape)
    d = check_map(d, "d", min_ndim=3, shape=(2, *geometry.shape))
    if not isinstance(oversample, int) or isinstance(oversample, bool) or oversample < 1:
        raise ValueError(f"oversample: expected an integer >= 1, got {oversample!r}")
    if d.device != f.device:
        raise ValueError(f"d: expected device {f.device} (that of f), got {d.device}")
    dtype = _floating(f, d)
    f, d = f.to(dtype), d.to(dtype)
    s = oversample
    ny, nx = geometry.shape
    big_y, big_x = s * ny, s * nx
    coef = _spline_coefficients(f, s)

    # Position = s * (pixel index) + s * d / dx in fine pixels. The integer part of the grid is
    # kept separate from the small displacement so float32 keeps full precision in the offset.
    u = d * (s / geometry.dx)
    ux, uy = u[..., 0, :, :], u[..., 1, :, :]
    with torch.no_grad():
        fx, fy = torch.floor(ux), torch.floor(uy)
        # Wrap the base node into the grid once (float arithmetic: integer remainder is slow on
        # CPU); the 4 x 4 stencil then reads a copy of the coefficients padded by 1 before and 2
        # after on each axis, so no per-tap wrapping is needed.
        gy = torch.arange(ny, device=f.device, dtype=dtype)[:, None] * s + fy
        gx = torch.arange(nx, device=f.device, dtype=dtype)[None, :] * s + fx
        gy = (gy - big_y * torch.floor(gy / big_y)).long().clamp_(0, big_y - 1)
        gx = (gx - big_x * torch.floor(gx / big_x)).long().clamp_(0, big_x - 1)
        base = (gy * (big_x + 3) + gx).reshape(*gx.shape[:-2], 1, ny * nx)
        base = (base + torch.arange(4, device=f.device)[:, None]).reshape(*gx.shape[:-2], 4 * ny * nx)
    tx, ty = ux - fx, uy - fy
    wy, wx = _bspline_weights(ty), _bspline_weights(tx)
    wx = torch.stack(wx, dim=-3).reshape(*tx.shape[:-2], 4, ny * nx)

    coef = torch.cat([coef[..., -1:, :], coef, coef[..., :2, :]], dim=-2)
    coef = torch.cat([coef[..., -1:], coef, coef[..., :2]], dim=-1)
    batch = torch.broadcast_shapes(f.shape[:-2], d.shape[:-3])
    flat = coef.reshape(*coef.shape[:-2], (big_y + 3) * (big_x + 3)).expand(*batch, -1)
    out = None
    for a in range(4):  # one stencil row at a time: 4 x batch x npix values in memory
        idx = (base + a * (big_x + 3)).expand(*batch, -1)
        vals = torch.gather(flat, -1, idx).reshape(*batch, 4, ny * nx)
        row = (vals * wx).sum(dim=-2).reshape(*batch, ny, nx)
        term = wy[a] * row
        out = term if out is None else out + term
    return out


def lens(f: torch.Tensor, phi: torch.Tensor, geometry: FlatGeometry, *, oversample: int = 2) -> torch.Tensor:
    r"""Lensed map :math:`\tilde f(\mathbf x) = f(\mathbf x + \nabla\phi(\mathbf x))`.

    Arguments:
        f: unlensed maps (..., ny, nx) on ``geometry`` (any units: T, Q or U in uK, ...). Each
            map is lensed independently (for polarisation, lens Q and U as two maps).
        phi: lensing potential (..., ny, nx), dimensionless, so that ``grad phi`` is the
            deflection in radians (C_ell^phiphi of :func:`~bayessky.physics.cmb_spectra`).
            Leading dimensions broadcast against those of ``f``.
        geometry: a sky :class:`~bayessky.sky.FlatGeometry`; maps are periodic on it.
        oversample: Fourier oversampling before cubic-spline interpolation (module notes).

    Returns:
        Tensor (broadcast(...), ny, nx) on the device and in the floating dtype of the inputs,
        differentiable in ``f`` and ``phi``.

    Example:
        >>> g = FlatGeometry(32, 2.0)
        >>> f = torch.randn(4, 32, 32)
        >>> torch.allclose(lens(f, torch.zeros(32, 32), g), f, atol=1e-5)
        True
    """
    geometry = _check_geometry(geometry, sky=True)
    f = check_map(f, "f", shape=geometry.shape)
    phi = check_map(phi, "phi", shape=geometry.shape)
    if phi.device != f.device:
        raise ValueError(f"phi: expected device {f.device} (that of f), got {phi.device}")
    dtype = _floating(f, phi)
    return remap(f.to(dtype), deflection(phi.to(dtype), geometry), geometry, oversample=oversample)
