"""``dust-toy-v1``: log-normal dust-like intensity maps, masks and the noisy observation model.

The specification of the family, implemented exactly. On an N x N periodic grid of unit pixels, with
``kappa = sqrt(kx^2 + ky^2)``, ``kx, ky = fftfreq(N) * N`` (cycles per box),

    S_g(k) = c (kappa^2 + 4)^(-1.4),   c such that mean_k S_g = 1 (unit pixel variance),
    g = real(ifft2(fft2(w) sqrt(S_g))),  w ~ N(0, 1) iid,
    I = exp(0.8 g - 0.32),               so E[I] = exp(-0.32 + 0.64 / 2) = 1,
    d = M (I + n),                       n ~ N(0, 0.05^2) white, M a 0/1 mask.

The true generative model is known, so :func:`model` (HMC on ``g``) gives the Bayes-optimal
inpainting a learned prior is measured against.
"""

from __future__ import annotations

import numpy as np
import pyro
import torch

from .._validate import as_tensor, check_map, check_mask, check_memory, check_positive
from ..distributions.grf import GaussianRandomField
from ..distributions.likelihoods import MapNormal
from ..sky import operators as _ops

__all__ = [
    "VERSION", "SLOPE", "AMPLITUDE", "OFFSET", "NOISE_SIGMA", "spectrum", "intensity_spectrum",
    "distribution", "intensity",
    "log_intensity_to_g", "sample", "point_source_mask", "strip_mask", "observe", "log_prior_g",
    "log_density", "model",
]

VERSION = "dust-toy-v1"
SLOPE = -1.4          # S_g ~ (kappa^2 + 4)^SLOPE
AMPLITUDE = 0.8       # I = exp(AMPLITUDE g - OFFSET)
OFFSET = 0.32         # = AMPLITUDE^2 / 2: E[I] = exp(-OFFSET + AMPLITUDE^2 / 2) = 1 at unit variance
NOISE_SIGMA = 0.05


#: bytes per pixel :func:`sample` holds at its peak (float64 noise, complex128 FFTs, g, I), checked
#: against the available memory before anything is drawn
PEAK_BYTES_PER_PIXEL = 72


def _check_n(n) -> int:
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"size: expected an integer >= 2, got {n!r}")
    return int(n)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def spectrum(n: int = 64) -> np.ndarray:
    """Per-mode spectrum ``S_g`` of ``g`` on the full (n, n) DFT grid (``fftfreq`` order),
    normalised to ``mean_k S_g = 1``; numpy float64 (see :func:`distribution` for torch)."""
    n = _check_n(n)
    kf = np.fft.fftfreq(n) * n
    kappa2 = kf[:, None] ** 2 + kf[None, :] ** 2
    s = (kappa2 + 4.0) ** SLOPE
    return s / s.mean()


def intensity_spectrum(n: int = 64, amplitude: float = AMPLITUDE) -> np.ndarray:
    r"""Exact per-mode spectrum ``S_I`` (n, n) of the intensity ``I = exp(a g - a^2/2)`` (numpy float64).

    For the unit-variance Gaussian ``g`` of :func:`spectrum`, with correlation
    ``xi_g(r) = ifft2(S_g)(r)``, the log-normal covariance is ``Cov(I_x, I_y) = exp(a^2 xi_g(x - y)) - 1``
    (mean 1), so on the periodic grid (numpy's DFT convention of :mod:`bayessky.sky.geometry`)

    .. math:: S_I(k) = \mathrm{fft2}\left[e^{a^2 \xi_g} - 1\right](k).

    ``S_I(0)`` is N_pix times the variance of the map mean (included: a Gaussian prior with this
    spectrum and mean 1 has exactly the first two moments of I). Non-negative (a Schur-product
    series of covariances); round-off below zero is clipped.
    """
    xi_g = np.real(np.fft.ifft2(spectrum(n)))
    s = np.real(np.fft.fft2(np.expm1(amplitude**2 * xi_g)))
    return np.maximum(s, 0.0)


def distribution(size: int = 64, *, device=None, dtype: torch.dtype = torch.float64,
                 validate_args: bool | None = None) -> GaussianRandomField:
    """The Gaussian field ``g`` as a Pyro :class:`GaussianRandomField` (event shape (size, size))."""
    s = torch.as_tensor(spectrum(size), dtype=dtype, device=device)
    return GaussianRandomField(s, validate_args=validate_args)


def intensity(g):
    """``I = exp(0.8 g - 0.32)`` (numpy or torch, same out)."""
    if isinstance(g, torch.Tensor):
        return torch.exp(AMPLITUDE * g - OFFSET)
    return np.exp(AMPLITUDE * np.asarray(g, dtype=float) - OFFSET)


def log_intensity_to_g(I):
    """Inverse of :func:`intensity`: ``g = (ln I + 0.32) / 0.8``."""
    if isinstance(I, torch.Tensor):
        return (torch.log(I) + OFFSET) / AMPLITUDE
    return (np.log(np.asarray(I, dtype=float)) + OFFSET) / AMPLITUDE


def sample(n_maps: int, size: int = 64, seed=None, return_g: bool = False):
    """Draw ``n_maps`` intensity maps ``I``, shape (n_maps, size, size).

    The white noise is ``numpy.random.default_rng(seed).standard_normal((n_maps, size, size))``
    (int, None or numpy Generator), or ``torch.randn(..., generator=seed)`` for a
    ``torch.Generator`` (then tensors are returned). With ``return_g`` returns ``(I, g)``.
    """
    n_maps = int(n_maps)
    if n_maps < 1:
        raise ValueError(f"n_maps: expected >= 1, got {n_maps}")
    size = _check_n(size)
    check_memory(PEAK_BYTES_PER_PIXEL * n_maps * size * size, "n_maps/size")
    if isinstance(seed, torch.Generator):
        w = torch.randn((n_maps, size, size), generator=seed, dtype=torch.float64, device=seed.device)
        s = torch.as_tensor(spectrum(size), device=w.device)
        g = torch.fft.ifft2(torch.fft.fft2(w) * torch.sqrt(s)).real
    else:
        w = _rng(seed).standard_normal((n_maps, size, size))
        g = np.real(np.fft.ifft2(np.fft.fft2(w) * np.sqrt(spectrum(size))))
    I = intensity(g)
    return (I, g) if return_g else I


def point_source_mask(size: int = 64, seed=None, fraction: float = 0.1,
                      radius: tuple[float, float] = (2.0, 5.0)) -> np.ndarray:
    """Point-source style mask: periodic discs at uniform random centres, radii uniform in
    ``radius`` (pixels), added until at least ``fraction`` of the pixels is masked.

    Returns numpy float64 (size, size), 1 = observed, 0 = masked; the same seed gives the same mask.
    Delegates to :func:`bayessky.sky.operators.point_source_mask`.
    """
    size = _check_n(size)
    m = _ops.point_source_mask(size, fraction=fraction, radius=radius, seed=_rng(seed),
                               periodic=True, dtype=torch.float64)
    return m.numpy()


def strip_mask(size: int = 64, seed=None, width: int = 6, orientation: str = "vertical") -> np.ndarray:
    """A straight strip ``width`` pixels wide (whole columns for ``"vertical"``), at a position
    drawn from ``seed`` and wrapping around the periodic edge.

    Returns numpy float64 (size, size), 1 = observed, 0 = masked.
    Delegates to :func:`bayessky.sky.operators.strip_mask`.
    """
    size = _check_n(size)
    m = _ops.strip_mask(size, width, orientation, seed=_rng(seed), dtype=torch.float64)
    return m.numpy()


def observe(I, mask=None, noise_sigma: float = NOISE_SIGMA, seed=None):
    """Observation ``d = M (I + n)``, ``n ~ N(0, noise_sigma^2)`` white.

    Arguments:
        I: intensity maps (..., N, N), numpy or torch. mask: 0/1 map broadcastable to ``I``
            (None = fully observed). noise_sigma: noise rms per pixel, intensity units.
        seed: int/None/numpy Generator (noise ``rng.standard_normal(I.shape)``) or a
            ``torch.Generator``.

    Returns:
        ``d`` of the shape of ``I``; numpy if ``I`` is numpy, else a tensor like ``I``.
    """
    is_torch = isinstance(I, torch.Tensor)
    t = check_map(I, "I")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    check_positive(noise_sigma, "noise_sigma", strict=False)
    m = None if mask is None else check_mask(mask, "mask", shape=t.shape[-2:], like=t)
    if isinstance(seed, torch.Generator):
        n = torch.randn(t.shape, generator=seed, dtype=t.dtype, device=seed.device).to(t.device)
    else:
        n = torch.as_tensor(_rng(seed).standard_normal(tuple(t.shape)), dtype=t.dtype, device=t.device)
    d = t + noise_sigma * n
    if m is not None:
        d = m * d
    return d if is_torch else d.numpy()


def log_prior_g(g):
    """Exact log-density of ``g`` under the true Gaussian field, summed over each map
    (numpy or torch in, same out; shape = leading dimensions)."""
    is_torch = isinstance(g, torch.Tensor)
    t = check_map(g, "g")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.shape[-1] != t.shape[-2]:
        raise ValueError(f"g: expected square maps (..., N, N), got shape {tuple(t.shape)}")
    lp = distribution(t.shape[-1], device=t.device, dtype=t.dtype).log_prob(t)
    return lp if is_torch else lp.numpy()


def log_density(I):
    r"""Exact log-density of intensity maps under the true model (per map):

    .. math:: \log p(I) = \log p_g(g(I)) - \sum_\mathrm{pix} \log(0.8\, I),
        \qquad g(I) = (\ln I + 0.32) / 0.8.
    """
    is_torch = isinstance(I, torch.Tensor)
    t = check_map(I, "I")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if (t <= 0).any():
        raise ValueError(f"I: must be > 0, got {int((t <= 0).sum())} values <= 0")
    g = log_intensity_to_g(t)
    lp = log_prior_g(g) - torch.log(AMPLITUDE * t).sum(dim=(-2, -1))
    return lp if is_torch else lp.numpy()


def model(data=None, mask=None, noise_sigma: float = NOISE_SIGMA, size: int | None = None):
    """The true generative model as a Pyro model: ``g ~ GRF(S_g)``, ``I = exp(0.8 g - 0.32)``
    (deterministic site ``"I"``), ``d ~ MapNormal(I, noise_sigma, mask)`` observed as site ``"d"``.

    Arguments:
        data: observed map (N, N) or None (then ``size`` gives N and ``d`` is sampled).
        mask: 0/1 map, 1 = observed. noise_sigma: noise rms per pixel.
    """
    if data is not None:
        data = as_tensor(data, "data")
        n, device, dtype = data.shape[-1], data.device, data.dtype
    else:
        if size is None:
            raise ValueError("size: needed when data is None")
        n, device, dtype = _check_n(size), None, torch.float64
    g = pyro.sample("g", distribution(n, device=device, dtype=dtype))
    I = pyro.deterministic("I", intensity(g))
    sigma = torch.as_tensor(float(noise_sigma), dtype=dtype, device=device)
    m = None if mask is None else as_tensor(mask, "mask", dtype=dtype, device=device)
    return pyro.sample("d", MapNormal(I, sigma, m), obs=data)
