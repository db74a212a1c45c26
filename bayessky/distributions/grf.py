"""Stationary periodic Gaussian random field on a flat grid, with exact log-density by FFT."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import Distribution, constraints

from .._validate import as_tensor
from ..sky.geometry import rfft_weights

__all__ = ["GaussianRandomField"]

_EMPTY = torch.Size()


def _half(s: torch.Tensor) -> torch.Tensor:
    """The rfft half-plane (..., ny, nx//2+1) of a full-grid spectrum."""
    return s[..., : s.shape[-1] // 2 + 1]


def _mirror(s: torch.Tensor) -> torch.Tensor:
    """S(-k) on the DFT grid: index (i, j) -> ((-i) mod ny, (-j) mod nx)."""
    return torch.roll(torch.flip(s, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


class GaussianRandomField(TorchDistribution):
    r"""A stationary, periodic, real, zero-mean Gaussian field on a ``(ny, nx)`` grid.

    The field is diagonal in Fourier space. With bayessky's convention (numpy's unnormalised DFT,
    :mod:`bayessky.sky.geometry`), ``E|fft2(x)_k|^2 = N S_k`` with ``N = ny nx``, the covariance
    is :math:`C = F^\dagger \mathrm{diag}(S) F / N` (eigenvalues ``S_k``), so the density is exact:

    .. math::
        \log p(x) = -\frac12 \sum_k \frac{|X_k|^2}{N S_k} - \frac12 \sum_k \log(2\pi S_k),
        \qquad X = \mathrm{fft2}(x).

    This holds for a *real* field as long as ``S(k) = S(-k)``, which every isotropic spectrum
    satisfies; it is checked when validation is on. Samples are
    ``x = real(ifft2(fft2(w) sqrt(S)))`` with ``w`` white of unit variance (computed with real
    FFTs), a reparametrised draw whose gradients reach ``S``.

    Arguments:
        spectrum: per-mode spectrum ``S_k > 0`` of shape ``(..., ny, nx)`` on the full DFT grid
            (``fftfreq`` order), in map-units^2; leading dimensions are the batch shape. Pixel
            variance is ``mean_k S_k``.
        geometry: optional :class:`~bayessky.sky.FlatGeometry` the spectrum lives on (kept for
            reference; its shape must match).
        validate_args: as in :class:`torch.distributions.Distribution`.

    Example:
        >>> import torch
        >>> from bayessky.sky import FlatGeometry
        >>> geo = FlatGeometry(8, 1.0, unit="pixel")
        >>> grf = GaussianRandomField(1.0 / (1.0 + geo.k_grid() ** 2))
        >>> x = grf.rsample((3,))
        >>> x.shape, grf.log_prob(x).shape
        (torch.Size([3, 8, 8]), torch.Size([3]))
    """

    arg_constraints = {"spectrum": constraints.independent(constraints.positive, 2)}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, spectrum: torch.Tensor, geometry=None, validate_args: bool | None = None):
        spectrum = as_tensor(spectrum, "spectrum")
        if spectrum.ndim < 2:
            raise ValueError(f"spectrum: expected shape (..., ny, nx), got {tuple(spectrum.shape)}")
        if min(spectrum.shape[-2:]) < 1:
            raise ValueError(f"spectrum: empty grid of shape {tuple(spectrum.shape)}")
        if geometry is not None and tuple(spectrum.shape[-2:]) != tuple(getattr(geometry, "shape", ())):
            if not hasattr(geometry, "shape"):
                raise TypeError(f"geometry: expected a FlatGeometry or None, got {type(geometry).__name__}")
            raise ValueError(f"spectrum: trailing shape {tuple(spectrum.shape[-2:])} does not match "
                             f"geometry shape {tuple(geometry.shape)}")
        self.spectrum = spectrum
        self.geometry = geometry
        validate = Distribution._validate_args if validate_args is None else bool(validate_args)
        if validate:
            # Our one-line checks replace torch's arg_constraints check (whose error dumps the whole
            # tensor); an inf S_k passes "positive" but makes log_prob -inf, so refuse it too.
            s = spectrum.detach()
            if not bool(torch.isfinite(s).all()):
                raise ValueError(f"spectrum: contains {int(torch.isnan(s).sum())} NaN and "
                                 f"{int(torch.isinf(s).sum())} inf values")
            if not bool((s > 0).all()):
                raise ValueError(f"spectrum: must be > 0 on every mode, got {int((s <= 0).sum())} values "
                                 f"<= 0 (min {float(s.min()):.6g})")
            # A non-symmetric S is not the spectrum of a real field: real(ifft) would silently
            # symmetrise it and the density above would be wrong.
            mirror = _mirror(s)
            if not torch.allclose(s, mirror, rtol=1e-6, atol=0.0):
                err = float(((s - mirror).abs() / s.abs().clamp_min(1e-300)).max())
                raise ValueError(f"spectrum: must satisfy S(k) = S(-k) for a real field "
                                 f"(max relative asymmetry {err:.3g})")
        # validate_args=False here: the spectrum was checked above, torch would check it again.
        super().__init__(spectrum.shape[:-2], spectrum.shape[-2:], validate_args=False)
        self._validate_args = validate

    @classmethod
    def from_cl(
        cls,
        cl: Callable | tuple | np.ndarray | torch.Tensor,
        geometry,
        *,
        device=None,
        dtype: torch.dtype = torch.float64,
        validate_args: bool | None = None,
    ) -> GaussianRandomField:
        r"""Field with ``S_k = C(|k|) / pixel_area`` from a physical spectrum.

        Arguments:
            cl: a callable of |k| (ell for sky patches, h/Mpc for boxes) returning C_ell or P(k);
                a pair ``(ell, cl)`` of 1-D arrays (linear interpolation, zero outside); or a 1-D
                array tabulated at integer ``ell = 0, 1, ..., len - 1`` (the CAMB layout).
            geometry: a :class:`~bayessky.sky.FlatGeometry`.

        Zero-valued modes (e.g. ell = 0 when C_0 = 0) make the field degenerate; add a floor if
        the spectrum vanishes anywhere on the grid.
        """
        from ..sky.geometry import FlatGeometry  # here: sky imports nothing from distributions

        if not isinstance(geometry, FlatGeometry):
            raise TypeError(f"geometry: expected a FlatGeometry, got {type(geometry).__name__}")
        if not callable(cl) and not isinstance(cl, tuple):
            try:
                arr = cl.detach().cpu().numpy() if isinstance(cl, torch.Tensor) else np.asarray(cl, float)
            except (TypeError, ValueError) as err:
                raise TypeError(f"cl: expected a callable, (ell, cl) or a 1-D array, got "
                                f"{type(cl).__name__}") from err
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(f"cl: expected a callable, (ell, cl) or a non-empty 1-D array, got shape "
                                 f"{arr.shape}")
            cl = (np.arange(len(arr), dtype=float), arr)
        try:
            s = geometry.per_mode_spectrum(cl, device=device, dtype=dtype)
            return cls(s, geometry=geometry, validate_args=validate_args)
        except (TypeError, ValueError) as err:
            # the user passed ``cl``: name it, not the internal per-mode "spectrum"
            msg = str(err)
            if msg.startswith("spectrum:"):
                raise type(err)("cl:" + msg[len("spectrum:"):]) from None
            raise

    # -- shapes -------------------------------------------------------------------------------
    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GaussianRandomField, _instance)
        batch_shape = torch.Size(batch_shape)
        new.spectrum = self.spectrum.expand(batch_shape + self.event_shape)
        new.geometry = self.geometry
        super(GaussianRandomField, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros_like(self.spectrum)

    @property
    def variance(self) -> torch.Tensor:
        """Pixel variance ``mean_k S_k``, the same at every pixel (stationarity)."""
        return self.spectrum.mean(dim=(-2, -1), keepdim=True).expand(self.spectrum.shape)

    # -- sampling and density -----------------------------------------------------------------
    def rsample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        ny, nx = self.event_shape
        w = torch.randn(shape, dtype=self.spectrum.dtype, device=self.spectrum.device)
        # For S(k) = S(-k), irfft2(rfft2(w) sqrt(S)) == real(ifft2(fft2(w) sqrt(S))), at half the cost.
        return torch.fft.irfft2(torch.fft.rfft2(w) * _half(self.spectrum).sqrt(), s=(ny, nx))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):  # an isinstance test only: HMC passes tensors
            value = as_tensor(value, "value", like=self.spectrum)
        if self._validate_args:
            # Replaces torch's _validate_sample (same O(map) cost, only with validation on) by the
            # same three checks with one-line errors instead of a tensor dump. Like torch's "real"
            # support only NaN is refused: an inf from a diverging HMC step must stay a divergence.
            if tuple(value.shape[-2:]) != tuple(self.event_shape) or value.ndim < 2:
                raise ValueError(f"value: expected trailing shape {tuple(self.event_shape)}, got shape "
                                 f"{tuple(value.shape)}")
            try:
                torch.broadcast_shapes(value.shape[:-2], self.batch_shape)
            except RuntimeError:
                raise ValueError(f"value: batch shape {tuple(value.shape[:-2])} does not broadcast with "
                                 f"the field's {tuple(self.batch_shape)}") from None
            if value.is_floating_point() and bool(torch.isnan(value).any()):
                raise ValueError(f"value: contains {int(torch.isnan(value).sum())} NaN values")
        ny, nx = self.event_shape
        n = ny * nx
        s = self.spectrum
        xk = torch.fft.rfft2(value.to(s.dtype))
        power = xk.real**2 + xk.imag**2
        w = rfft_weights(ny, nx, device=s.device, dtype=s.dtype)
        quad = (w * power / _half(s)).sum(dim=(-2, -1)) / n
        logdet = torch.log(s).sum(dim=(-2, -1))
        return -0.5 * quad - 0.5 * logdet - 0.5 * n * math.log(2 * math.pi)

    def entropy(self) -> torch.Tensor:
        r""":math:`\frac12 \sum_k \log(2 \pi e S_k)`."""
        n = self.event_shape.numel()
        return 0.5 * torch.log(self.spectrum).sum(dim=(-2, -1)) + 0.5 * n * (1 + math.log(2 * math.pi))
