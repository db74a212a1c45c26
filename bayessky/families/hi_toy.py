"""``hi-toy-v1``: log-normal HI-like maps of (Omega_m, sigma_8) with an exact likelihood.

A stand-in for CAMELS HI maps: positive, skewed, periodic maps whose statistics depend on
(Omega_m, sigma_8) through a physical-looking power spectrum. Because log10 of a map is a
Gaussian field, p(map | Omega_m, sigma_8) is known exactly, so every learned-likelihood
posterior can be compared with the exact one. This docstring is the specification; the code
implements it exactly and the tests check it against an independent loop-based numpy version.

Grid. Box L = 25 Mpc/h, N x N pixels (N = 64 by default; 32 and 16 for tests), pixel L / N;
``k = 2 pi fftfreq(N, L / N)`` per axis (h/Mpc), |k| on the 2-D DFT grid, ``k_f = 2 pi / L``.

Spectrum. Gamma = 0.6711 Omega_m; BBKS transfer with q = |k| / Gamma,

    T(q) = ln(1 + 2.34 q) / (2.34 q) [1 + 3.89 q + (16.1 q)^2 + (5.46 q)^3 + (6.71 q)^4]^(-1/4),
    T(0) = 1;   shape(k) = (|k| / k_f) T(|k| / Gamma)^2   (0 at k = 0).

sigma_8 sets the rms at the smoothing scale R = 1 Mpc/h:
``norm = mean over all N^2 DFT modes of shape(k) exp(-(|k| R)^2)`` and

    S(k) = sigma_8^2 shape(k) / norm + 0.01        (0.01: white-noise variance per pixel),

the per-mode variance in numpy's unnormalised convention, E|fft2(g)_k|^2 = N^2 S(k).

Sampling. ``w ~ N(0, 1)`` iid on N x N; ``g = real(ifft2(fft2(w) sqrt(S)))``; map = 10^(8 + g).

Likelihood. The exact log-likelihood of ``g = log10(map) - 8`` (the parameter-free Jacobian of
the log is dropped):

    log p(g | theta) = -1/2 sum_k |fft2(g)_k|^2 / (N^2 S_k) - 1/2 sum_k log(2 pi S_k).

Prior: Omega_m ~ U(0.1, 0.5), sigma_8 ~ U(0.6, 1.0) (the CAMELS Latin-hypercube box).

Reference figures (N = 64, 30 maps, 40 x 40 grid, exact likelihood): posterior-mean RMSE about
0.060 (Omega_m) and 0.047 (sigma_8), posterior std about 0.062 and 0.049: the floor a learned
likelihood can approach and never beat (HIGlow, Friedman & Hassan, "HIGlow: High Fidelity
Invertible Generative Model for HI Maps", reports 0.058 / 0.065 on CAMELS maps).
"""

from __future__ import annotations

import math

import numpy as np
import pyro.distributions as dist
import torch

from .._validate import as_tensor, check_map, check_memory, check_positive
from ..distributions.grf import GaussianRandomField
from ..sky.geometry import rfft_weights

__all__ = [
    "VERSION", "prior_bounds", "bbks_transfer", "spectrum", "distribution", "sample",
    "log_likelihood", "prior", "sample_prior",
]

VERSION = "hi-toy-v1"
prior_bounds = {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0)}
#: bytes per pixel :func:`sample` holds at its peak (float64 noise, two complex128 FFTs, the spectrum,
#: g and the maps): checked against the available memory before anything is drawn
PEAK_BYTES_PER_PIXEL = 72

BOX = 25.0          # Mpc/h
H = 0.6711          # Gamma = Omega_m * h
R_SMOOTH = 1.0      # Mpc/h, the scale sigma_8 normalises
WHITE = 0.01        # white-noise variance per pixel added to S(k)


def bbks_transfer(q: torch.Tensor) -> torch.Tensor:
    r"""BBKS transfer function with :math:`T(0) = 1`, safe (no NaN) in value and gradient at q = 0.

    .. math::
        T(q) = \frac{\ln(1 + 2.34 q)}{2.34 q}
               \left[1 + 3.89 q + (16.1 q)^2 + (5.46 q)^3 + (6.71 q)^4\right]^{-1/4}
    """
    return torch.sqrt(_bbks_squared(q))


# Horner coefficients of 1 + 3.89 q + (16.1 q)^2 + (5.46 q)^3 + (6.71 q)^4 (pow is slow on big grids)
_C1, _C2, _C3, _C4 = 3.89, 16.1**2, 5.46**3, 6.71**4


def _bbks_squared(q: torch.Tensor) -> torch.Tensor:
    """T(q)^2, the quantity the spectrum needs (one square root fewer)."""
    pos = q > 0
    # evaluate the formula on a dummy q = 1 where q = 0 so neither branch produces 0/0 in autograd
    qs = torch.where(pos, q, torch.ones_like(q))
    x = 2.34 * qs
    poly = 1 + qs * (_C1 + qs * (_C2 + qs * (_C3 + qs * _C4)))
    t2 = (torch.log1p(x) / x) ** 2 * torch.rsqrt(poly)
    return torch.where(pos, t2, torch.ones_like(q))


def _k_grid(n: int, box: float, half: bool, *, device, dtype) -> torch.Tensor:
    """|k| in h/Mpc on the full (n, n) or rfft half (n, n//2+1) DFT grid; k = 2 pi fftfreq(n, L/n)."""
    d = box / n
    ky = 2 * math.pi * torch.fft.fftfreq(n, d=d, dtype=dtype, device=device)
    kx = (torch.fft.rfftfreq if half else torch.fft.fftfreq)(n, d=d, dtype=dtype, device=device) * 2 * math.pi
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def _spectrum_t(n: int, om: torch.Tensor, s8: torch.Tensor, box: float, half: bool = False) -> torch.Tensor:
    """S(k) for broadcast parameters ``om``, ``s8`` of shape B -> B + grid (torch)."""
    om, s8 = torch.broadcast_tensors(om, s8)
    k = _k_grid(n, box, half, device=om.device, dtype=om.dtype)
    kf = 2 * math.pi / box
    gamma = (om * H)[..., None, None]
    shape = (k / kf) * _bbks_squared(k / gamma)
    smooth = shape * torch.exp(-((k * R_SMOOTH) ** 2))
    if half:
        w = rfft_weights(n, n, device=om.device, dtype=om.dtype)
        norm = (w * smooth).sum(dim=(-2, -1)) / (n * n)
    else:
        norm = smooth.mean(dim=(-2, -1))
    return (s8**2 / norm)[..., None, None] * shape + WHITE


def _is_torch(*xs) -> bool:
    return any(isinstance(x, torch.Tensor) for x in xs)


def _params(omega_m, sigma_8, *, like: torch.Tensor | None = None):
    """Parameters as tensors (dtype/device from a tensor argument, float64 otherwise), checked."""
    ref = next((x for x in (omega_m, sigma_8) if isinstance(x, torch.Tensor) and x.is_floating_point()), like)
    dtype = ref.dtype if ref is not None else torch.float64
    if like is not None and ref is not like:
        dtype = torch.promote_types(dtype, like.dtype)
    device = ref.device if ref is not None else None
    om = as_tensor(omega_m, "omega_m", dtype=dtype, device=device)
    s8 = as_tensor(sigma_8, "sigma_8", dtype=dtype, device=device)
    # both > 0 and finite: S(k) depends on sigma_8^2, so a negative sigma_8 would silently give
    # the likelihood of |sigma_8|, and 0 a white-noise-only field
    check_positive(om, "omega_m")
    check_positive(s8, "sigma_8")
    try:
        torch.broadcast_shapes(om.shape, s8.shape)
    except RuntimeError as err:
        raise ValueError(f"omega_m, sigma_8: shapes {tuple(om.shape)} and {tuple(s8.shape)} "
                         "do not broadcast") from err
    return om, s8


def _check_n(n) -> int:
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    return int(n)


def spectrum(n: int, omega_m, sigma_8, box: float = BOX):
    r"""Per-mode spectrum S(k) of ``g`` on the full n x n DFT grid (``fftfreq`` order).

    Arguments:
        n: pixels per side.
        omega_m, sigma_8: floats or arrays/tensors, broadcast together to shape ``B``.
        box: side L in Mpc/h.

    Returns:
        Array of shape ``B + (n, n)``, dimensionless (``g`` is log10 of the map): numpy if no
        input is a tensor, else a tensor on the parameters' device and dtype, differentiable in
        ``omega_m`` and ``sigma_8``.
    """
    n = _check_n(n)
    check_positive(box, "box")
    om, s8 = _params(omega_m, sigma_8)
    s = _spectrum_t(n, om, s8, float(box))
    return s if _is_torch(omega_m, sigma_8) else s.numpy()


def distribution(
    omega_m, sigma_8, size: int = 64, box: float = BOX, validate_args: bool | None = None
) -> GaussianRandomField:
    """The Pyro distribution of ``g = log10(map) - 8``: a :class:`GaussianRandomField` with
    batch shape the broadcast shape of the parameters (tensors; floats become float64)."""
    om, s8 = _params(omega_m, sigma_8)
    return GaussianRandomField(_spectrum_t(_check_n(size), om, s8, float(box)), validate_args=validate_args)


def sample(n_maps: int, omega_m, sigma_8, size: int = 64, seed=None, box: float = BOX):
    r"""Draw ``n_maps`` linear maps ``10^(8 + g)``, shape ``(n_maps, size, size)``.

    Recipe (module docstring): ``w ~ N(0, 1)`` iid, ``g = real(ifft2(fft2(w) sqrt(S)))``. The noise is
    ``numpy.random.default_rng(seed).standard_normal((n_maps, size, size))`` when ``seed`` is an
    int, None or a numpy Generator (the same seed gives the same maps for numpy or torch
    parameters), or ``torch.randn(..., generator=seed)`` when ``seed`` is a ``torch.Generator``.

    Arguments:
        n_maps: number of maps.
        omega_m, sigma_8: scalars, or 1-D of length ``n_maps`` (one parameter pair per map).
        size: pixels per side N. seed: see above. box: L in Mpc/h.

    Returns:
        numpy float64 array, or a tensor (parameters' dtype/device) if a parameter is a tensor or
        ``seed`` is a ``torch.Generator``. Units: those of the HI column density (10^8 scale).
    """
    n_maps = int(n_maps)
    if n_maps < 1:
        raise ValueError(f"n_maps: expected >= 1, got {n_maps}")
    size = _check_n(size)
    check_memory(PEAK_BYTES_PER_PIXEL * n_maps * size * size, "n_maps/size")
    om, s8 = _params(omega_m, sigma_8)
    for name, p in (("omega_m", om), ("sigma_8", s8)):
        if p.ndim > 1 or (p.ndim == 1 and len(p) not in (1, n_maps)):
            raise ValueError(f"{name}: expected a scalar or {n_maps} values, got shape {tuple(p.shape)}")
    s = _spectrum_t(size, om, s8, float(box))  # (N, N) or (n_maps, N, N)
    as_torch = _is_torch(omega_m, sigma_8) or isinstance(seed, torch.Generator)
    if isinstance(seed, torch.Generator):
        w = torch.randn((n_maps, size, size), generator=seed, dtype=s.dtype, device=seed.device).to(s.device)
    else:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        w = torch.as_tensor(rng.standard_normal((n_maps, size, size)), dtype=s.dtype, device=s.device)
    g = torch.fft.ifft2(torch.fft.fft2(w) * torch.sqrt(s)).real
    maps = torch.pow(10.0, 8.0 + g)
    return maps if as_torch else maps.detach().numpy()


def log_likelihood(maps, omega_m, sigma_8, box: float = BOX, paired: bool = False):
    r"""Exact :math:`\log p(g \mid \Omega_m, \sigma_8)` of linear maps, ``g = log10(maps) - 8``.

    Arguments:
        maps: positive maps of shape ``Bm + (N, N)`` (``Bm`` may be empty).
        omega_m, sigma_8: parameters broadcast together to shape ``Bp``.
        box: L in Mpc/h.
        paired: pair parameters with maps by ordinary broadcasting (see below).

    Broadcasting rule (output shape):

    - ``paired=True``: ``broadcast(Bp, Bm)`` — Pyro's rule; e.g. parameters (M,) with maps
      (M, N, N) give (M,), the i-th parameters scoring the i-th map.
    - ``paired=False`` (default), parameters with ``len(Bp) >= 2`` and ``Bp[-1] == 1``: the
      parameters are already laid out for broadcasting, ``broadcast(Bp, Bm)``; e.g. (P, 1) with
      maps (M, N, N) gives (P, M).
    - ``paired=False`` otherwise: the parameters form a grid placed in front, ``Bp + Bm``; e.g.
      scalars give ``Bm``, (P,) with maps (M, N, N) gives (P, M), (A, B) gives (A, B, M).

    Returns:
        numpy float64 if no input is a tensor, else a tensor (dtype promoted from the maps and
        parameters; device of the parameters if they are tensors, else of the maps),
        differentiable in ``omega_m`` and ``sigma_8``.
    """
    as_torch = _is_torch(maps, omega_m, sigma_8)
    m = check_map(maps, "maps")
    if m.shape[-1] != m.shape[-2]:
        raise ValueError(f"maps: expected square maps (..., N, N), got shape {tuple(m.shape)}")
    if not m.is_floating_point():
        m = m.to(torch.float64)
    if not as_torch:
        m = m.to(torch.float64)
    if (m <= 0).any():
        raise ValueError(f"maps: must be > 0 (log10 is taken), got {int((m <= 0).sum())} values <= 0")
    check_positive(box, "box")
    om, s8 = _params(omega_m, sigma_8, like=m)
    m = m.to(dtype=om.dtype, device=om.device)
    n = m.shape[-1]
    bm = m.shape[:-2]
    bp = torch.broadcast_shapes(om.shape, s8.shape)
    om, s8 = om.expand(bp), s8.expand(bp)

    g = torch.log10(m) - 8.0
    xk = torch.fft.rfft2(g)
    w = rfft_weights(n, n, device=g.device, dtype=g.dtype)
    power = w * (xk.real**2 + xk.imag**2) / (n * n)         # Bm + half grid
    s = _spectrum_t(n, om, s8, float(box), half=True)        # Bp + half grid
    logdet = (w * torch.log(s)).sum(dim=(-2, -1))            # Bp
    const = 0.5 * n * n * math.log(2 * math.pi)
    if paired or (len(bp) >= 2 and bp[-1] == 1):
        try:
            out_shape = torch.broadcast_shapes(bp, bm)
        except RuntimeError as err:
            raise ValueError(f"omega_m/sigma_8: parameter shape {tuple(bp)} does not broadcast with the "
                             f"maps' batch shape {tuple(bm)}") from err
        quad = (power / s).sum(dim=(-2, -1))
        out = -0.5 * quad - 0.5 * logdet - const
        out = out.expand(out_shape)
    else:
        # grid x maps by one matrix product: no Bp x Bm x N^2 intermediate
        quad = (1.0 / s).reshape(-1, power.shape[-2] * power.shape[-1]) @ power.reshape(
            -1, power.shape[-2] * power.shape[-1]).T
        out = (-0.5 * quad - 0.5 * logdet.reshape(-1, 1) - const).reshape(tuple(bp) + tuple(bm))
    return out if as_torch else out.numpy()


def prior(*, device=None, dtype: torch.dtype = torch.float64) -> dict[str, dist.Uniform]:
    """Pyro priors of the CAMELS LH box, ``{"Omega_m": U(0.1, 0.5), "sigma_8": U(0.6, 1.0)}``.

    Example:
        >>> import pyro
        >>> p = prior()
        >>> om = pyro.sample("Omega_m", p["Omega_m"])
    """
    return {name: dist.Uniform(torch.tensor(lo, device=device, dtype=dtype),
                               torch.tensor(hi, device=device, dtype=dtype))
            for name, (lo, hi) in prior_bounds.items()}


def sample_prior(n: int, seed=None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` prior draws ``(omega_m, sigma_8)``, each numpy of shape (n,), from
    ``numpy.random.default_rng(seed)`` (or a Generator): Omega_m drawn first, then sigma_8."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lo, hi = prior_bounds["Omega_m"]
    om = rng.uniform(lo, hi, size=int(n))
    lo, hi = prior_bounds["sigma_8"]
    s8 = rng.uniform(lo, hi, size=int(n))
    return om, s8
