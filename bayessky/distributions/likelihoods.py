"""Map likelihoods: masked Gaussian pixel noise, white or inhomogeneous."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from .._validate import as_tensor, unbatched

__all__ = ["MapNormal"]

_EMPTY = torch.Size()


class MapNormal(TorchDistribution):
    r"""Data model :math:`d = M (s + n)`, :math:`n \sim \mathcal{N}(0, \sigma^2)` independent per pixel.

    For every pixel with :math:`M > 0`, :math:`d \sim \mathcal{N}(M s, (M \sigma)^2)`; pixels
    with :math:`M = 0` carry no information and contribute nothing to ``log_prob`` (their data
    value is ignored, so NaN or any fill value there is fine):

    .. math::
        \log p(d \mid s) = \sum_{M_i > 0} \Big[-\frac{(d_i - M_i s_i)^2}{2 M_i^2 \sigma_i^2}
            - \log(M_i \sigma_i) - \frac12 \log 2\pi\Big].

    A binary mask (0/1) is the usual case; an apodised mask in [0, 1] is the same formula.
    Samples are ``M (s + sigma w)`` (zero in masked pixels), reparametrised.

    Arguments:
        loc: signal map ``s`` of shape ``(..., ny, nx)``, map units.
        sigma: noise rms per pixel, a scalar (white noise) or a map broadcastable to ``loc``
            (inhomogeneous noise), map units; must be > 0 where the mask is > 0.
        mask: optional ``M`` broadcastable to ``loc``, values in [0, 1]; ``None`` means all ones.
            Checked always (finite, in [0, 1]), whatever ``validate_args`` says.
        validate_args: as in :class:`torch.distributions.Distribution`; checks NaN in ``loc`` and
            the value, and sigma > 0 on observed pixels. The value's trailing shape is checked
            always: a (1, nx) or scalar value would otherwise broadcast against the map.

    The batch shape is the broadcast of the leading dimensions of ``loc``, ``sigma`` and
    ``mask``; the event shape is ``(ny, nx)``.

    Example:
        >>> import torch
        >>> s = torch.zeros(8, 8)
        >>> mask = torch.ones(8, 8); mask[:2] = 0
        >>> lik = MapNormal(s, 0.1, mask)
        >>> lik.log_prob(lik.sample()).shape
        torch.Size([])
    """

    arg_constraints = {"loc": constraints.independent(constraints.real, 2),
                       "sigma": constraints.independent(constraints.positive, 2)}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc: torch.Tensor, sigma, mask=None, validate_args: bool | None = None):
        loc = as_tensor(loc, "loc")
        if not loc.is_floating_point():
            loc = loc.to(torch.get_default_dtype())
        if loc.ndim < 2:
            raise ValueError(f"loc: expected a map (..., ny, nx), got shape {tuple(loc.shape)}")
        sigma = as_tensor(sigma, "sigma", like=loc)
        mask_t = None if mask is None else as_tensor(mask, "mask", like=loc)
        event = loc.shape[-2:]
        parts = [("loc", loc), ("sigma", sigma)] + ([] if mask_t is None else [("mask", mask_t)])
        for name, t in parts[1:]:
            # a 1-D sigma or mask is ambiguous (rows? a batch?): ask for a scalar or a map
            if t.ndim == 1:
                raise ValueError(f"{name}: expected a scalar or a map (..., ny, nx), "
                                 f"got shape {tuple(t.shape)}")
        try:
            full = torch.broadcast_shapes(*(t.shape for _, t in parts))
        except RuntimeError as err:
            shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in parts)
            raise ValueError(f"sigma/mask: shapes do not broadcast: {shapes}") from err
        if full[-2:] != event:
            raise ValueError(f"sigma/mask: broadcast shape {tuple(full)} changes the map shape "
                             f"{tuple(event)}")
        if validate_args is None:
            validate_args = torch.distributions.Distribution._validate_args
        if mask_t is not None:
            # always, not only under validate_args: the mask is the user's data description and
            # Pyro's MCMC / bayessky.infer switch validation off (a NaN mask would silently count
            # as unobserved). One fused pass: NaN fails both comparisons, +-inf fails one.
            _check_mask(mask_t)
        if validate_args:
            _check("loc", loc)
            observed = sigma if mask_t is None else torch.where(mask_t > 0, sigma, torch.ones_like(sigma))
            _check("sigma", observed)
            if (observed <= 0).any():
                raise ValueError(f"sigma: must be > 0 on observed pixels, "
                                 f"got min {float(observed.min()):.3g}")
        self.loc = loc.expand(full)
        self.mask = None if mask_t is None else mask_t.expand(full)
        # sigma is irrelevant where M = 0; replace it there so 0 or inf fill values stay harmless.
        sigma = sigma.expand(full)
        self.sigma = sigma if mask_t is None else torch.where(self.mask > 0, sigma, torch.ones_like(sigma))
        super().__init__(full[:-2], event, validate_args=False)
        self._validate_args = validate_args

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MapNormal, _instance)
        shape = torch.Size(batch_shape) + self.event_shape
        new.loc = self.loc.expand(shape)
        new.sigma = self.sigma.expand(shape)
        new.mask = None if self.mask is None else self.mask.expand(shape)
        super(MapNormal, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return self.loc if self.mask is None else self.mask * self.loc

    @property
    def variance(self) -> torch.Tensor:
        v = self.sigma**2
        return v if self.mask is None else (self.mask**2) * v

    def rsample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        d = self.loc + self.sigma * eps
        return d if self.mask is None else self.mask * d

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = as_tensor(value, "value", dtype=self.loc.dtype, device=self.loc.device)
        # shape only, no data access: free inside HMC, and it stops a (1, nx), (ny, 1) or scalar
        # value from broadcasting into a full-map log-density
        if value.ndim < 2 or value.shape[-2:] != self.event_shape:
            raise ValueError(f"value: expected a map of trailing shape {tuple(self.event_shape)} "
                             f"(the data), got shape {tuple(value.shape)}")
        if self.mask is None:
            if self._validate_args:
                _check("value", value)
            z = (value - self.loc) / self.sigma
            lp = -0.5 * z**2 - torch.log(self.sigma) - 0.5 * math.log(2 * math.pi)
            return lp.sum(dim=(-2, -1))
        observed = self.mask > 0
        if self._validate_args:
            bad = ~torch.isfinite(value) & observed
            if bad.any():
                raise ValueError(f"value: contains {int(bad.sum())} non-finite values on observed pixels")
        # masked pixels: substitute the mean so NaN fill values cannot leak through 0 * NaN
        m = torch.where(observed, self.mask, torch.ones_like(self.mask))
        value = torch.where(observed, value, m * self.loc)
        scale = m * self.sigma
        z = (value - m * self.loc) / scale
        lp = -0.5 * z**2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)
        return torch.where(observed, lp, torch.zeros_like(lp)).sum(dim=(-2, -1))


def _check_mask(mask: torch.Tensor) -> None:
    """Refuse NaN/inf and values outside [0, 1] in one fused reduction (the common, valid case)."""
    m = unbatched(mask.detach())  # a BatchedTensor under vmap cannot be branched on
    if bool(((m >= 0) & (m <= 1)).all()):
        return
    _check("mask", m)
    raise ValueError(f"mask: values must lie in [0, 1], got range [{float(m.min()):.3g}, "
                     f"{float(m.max()):.3g}]")


def _check(name: str, t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains {int(torch.isnan(t).sum())} NaN and "
                         f"{int(torch.isinf(t).sum())} inf values")
