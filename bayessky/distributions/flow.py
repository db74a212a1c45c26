"""A trained normalizing flow as a Pyro distribution over maps in the user's units."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from .._validate import as_tensor, device_dtype, unbatched

__all__ = ["FlowDistribution"]

_EMPTY = torch.Size()


def net_shape(net) -> tuple[int, ...]:
    """The event shape a flow network works on: ``net.shape`` or ``architecture["shape"]``."""
    shape = getattr(net, "shape", None)
    if shape is None:
        shape = (getattr(net, "architecture", None) or {}).get("shape")
    if shape is None:
        for key in ("features", "dim", "latent_dim"):
            if getattr(net, key, None) is not None:
                shape = (int(getattr(net, key)),)
                break
    if shape is None:
        raise TypeError(f"net: cannot tell the event shape of {type(net).__name__} (no .shape)")
    return tuple(int(s) for s in shape)


def net_context(net) -> tuple[int, list[float] | None, list[float] | None]:
    """``(context_dim, low, high)`` of a flow network (0 and None for an unconditional one)."""
    arch = getattr(net, "architecture", None) or {}
    dim = getattr(net, "context_dim", None)
    dim = arch.get("context_dim", 0) if dim is None else dim
    low = getattr(net, "context_low", None)
    high = getattr(net, "context_high", None)
    low = arch.get("context_low") if low is None else low
    high = arch.get("context_high") if high is None else high

    def tolist(v):
        if v is None:
            return None
        return [float(a) for a in (v.detach().cpu().reshape(-1) if isinstance(v, torch.Tensor) else v)]

    return int(dim or 0), tolist(low), tolist(high)


def as_transform(transform) -> Transform | None:
    if transform is None or isinstance(transform, Transform):
        return transform
    if isinstance(transform, (list, tuple, dict)):
        from ..distributions.transforms import transform_from_config

        return transform_from_config(transform)
    raise TypeError(f"transform: expected a torch Transform or a config list, got {type(transform).__name__}")


def check_temperature(temperature) -> float:
    """A finite temperature > 0: 0 collapses every draw onto the base mode, a negative one flips
    it, NaN/inf give non-finite maps."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature: expected a number, got {type(temperature).__name__}") from None
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature: must be > 0 and finite, got {t}")
    return t


class FlowDistribution(TorchDistribution):
    r"""Exact density of a (conditional) flow, expressed in the user's map units.

    The network models :math:`y = T(x)`, with :math:`T` the data transform used in training
    (physical map -> network space, e.g. log10 then standardise). The distribution of the
    physical map is the change of variables

    .. math:: \log p(x \mid c) = \log p_\text{net}(T(x) \mid c)
              + \sum_\text{pixels} \log \left|\frac{\partial T}{\partial x}\right|,

    and ``rsample`` returns :math:`T^{-1}(y)` with :math:`y` from the network's reparametrised
    sampler, so gradients reach both the network and the context :math:`c`. Unlike FlowJAX's
    NumPyro wrapper, nothing here stops gradients to :math:`c`: HMC can move the conditioning
    parameters (e.g. :math:`\Omega_m, \sigma_8`).

    Shapes: a network over (1, H, W) maps gives ``event_shape = (H, W)`` (single-channel maps are
    the common case and are handled as plain 2-D arrays); a network over (C, H, W) with C > 1
    gives ``event_shape = (C, H, W)``; a vector flow over (D,) gives ``(D,)``. The context has
    shape ``batch_shape + (d,)``. ``log_prob`` broadcasts maps against contexts, so one map of
    shape (H, W) against P contexts gives P log-densities (the grid engine's case) and is sent
    to the network as one map with P conditions.

    Arguments:
        net: a flow with ``log_prob(y, context=None) -> (B,)`` and ``sample(n, context=None,
            temperature=1.0) -> (n, *shape)`` (e.g. :class:`bayessky.nn.Glow`,
            :class:`bayessky.nn.ConditionalGlow`, a MAF), on the device and dtype to use.
        context: conditioning values in physical units, shape (..., d), or None.
        transform: the data transform (physical -> network space) as a torch ``Transform`` or a
            config list (``[{"name": "log10"}, {"name": "standardise", ...}]``); None for identity.
        temperature: scale of the base draws in ``rsample`` (1 = the model itself); finite, > 0.
        context_names: names of the context entries, for error messages.
        validate_args: check the values given to ``log_prob`` for finiteness and support (O(map)
            work, so it follows Pyro's switch). The context's finiteness and training range and
            the value's trailing shape are checked always: Pyro's MCMC and bayessky's engines
            switch validation off, and a posterior must not silently leave the training range.

    Example:
        >>> from bayessky.nn import Glow
        >>> d = FlowDistribution(Glow((1, 8, 8), levels=2, steps=1, hidden=8).eval())
        >>> x = d.sample((3,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([3, 8, 8]), torch.Size([3]))
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(
        self,
        net: torch.nn.Module,
        context=None,
        transform: Transform | Sequence[dict] | None = None,
        *,
        temperature: float = 1.0,
        context_names: Sequence[str] | None = None,
        validate_args: bool | None = None,
    ):
        self.net = net
        self.transform = as_transform(transform)
        self.temperature = check_temperature(temperature)
        self._net_shape = net_shape(net)
        self._squeeze = len(self._net_shape) == 3 and self._net_shape[0] == 1
        event_shape = torch.Size(self._net_shape[1:] if self._squeeze else self._net_shape)
        self.context_dim, self.context_low, self.context_high = net_context(net)
        self.context_names = list(context_names) if context_names is not None else None
        self._device, self._dtype = device_dtype(net)

        if context is None:
            if self.context_dim > 0:
                raise ValueError(f"context: required, this flow is conditioned on {self._names()}")
            self.context = None
            batch_shape = _EMPTY
        else:
            if self.context_dim == 0:
                raise ValueError("context: this flow is unconditional, got a context")
            c = as_tensor(context, "context")
            if c.ndim == 0 or c.shape[-1] != self.context_dim:
                raise ValueError(f"context: expected shape (..., {self.context_dim}) for {self._names()}, "
                                 f"got {tuple(c.shape)}")
            # .to() is differentiable: gradients still reach a float64 context from HMC
            self.context = c.to(dtype=self._dtype, device=self._device)
            batch_shape = self.context.shape[:-1]
        super().__init__(batch_shape, event_shape, validate_args=validate_args)
        if self.context is not None:
            # not gated by _validate_args: Pyro's MCMC and bayessky.infer trace models with
            # validation off, which would let HMC/grid posteriors wander outside the training box
            self._check_context(self.context)

    # -- helpers --------------------------------------------------------------------------------
    def _names(self) -> str:
        if self.context_names:
            return "(" + ", ".join(self.context_names) + ")"
        return f"{self.context_dim} values"

    def _check_context(self, c: torch.Tensor) -> None:
        # a handful of numbers per call (batch x d), cheap next to the network evaluation
        c = unbatched(c.detach())
        if not torch.isfinite(c).all():
            raise ValueError(f"context: contains {int((~torch.isfinite(c)).sum())} non-finite values")
        if self.context_low is None or self.context_high is None:
            return
        low = torch.as_tensor(self.context_low, dtype=c.dtype, device=c.device)
        high = torch.as_tensor(self.context_high, dtype=c.dtype, device=c.device)
        # a few ulps of slack: grid end points and float32 round-trips sit exactly on the bounds
        tol = 1e-6 * (high - low).abs()
        bad = ((c < low - tol) | (c > high + tol)).reshape(-1, self.context_dim).any(0)
        for i in torch.nonzero(bad).flatten().tolist():
            name = self.context_names[i] if self.context_names else f"context[{i}]"
            col = c[..., i]
            raise ValueError(f"context: {name} outside the training range [{self.context_low[i]:.6g}, "
                             f"{self.context_high[i]:.6g}], got min {float(col.min()):.6g} "
                             f"max {float(col.max()):.6g}")

    @property
    def support(self):
        n = len(self.event_shape)
        dom = self.transform.domain if self.transform is not None else constraints.real
        return constraints.independent(dom, n - dom.event_dim) if n > dom.event_dim else dom

    def _to_net(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-3) if self._squeeze else x

    def _from_net(self, y: torch.Tensor) -> torch.Tensor:
        return y.squeeze(-3) if self._squeeze else y

    def _check_shape(self, value: torch.Tensor) -> None:
        # shapes only (no data access): always on, because log_prob reshapes the value to the
        # network's shape and a (4, 16) map would otherwise pass for an (8, 8) one
        n = len(self.event_shape)
        if value.ndim < n or value.shape[value.ndim - n:] != self.event_shape:
            raise ValueError(f"value: expected a map of trailing shape {tuple(self.event_shape)}, "
                             f"got {tuple(value.shape)}")
        try:
            torch.broadcast_shapes(value.shape[: value.ndim - n], self.batch_shape)
        except RuntimeError:
            raise ValueError(f"value: leading shape {tuple(value.shape[: value.ndim - n])} does not "
                             f"broadcast with the batch shape {tuple(self.batch_shape)}") from None

    def _check_value(self, value: torch.Tensor) -> None:
        n = len(self.event_shape)
        v = value.detach()
        if not torch.isfinite(v).all():
            raise ValueError(f"value: contains {int(torch.isnan(v).sum())} NaN and "
                             f"{int(torch.isinf(v).sum())} inf values")
        if self.transform is not None and n >= self.transform.domain.event_dim:
            ok = self.transform.domain.check(self._to_net(v))
            # check() reduces over the constraint's own event dims only; reduce the rest
            if not bool(ok.all()):
                raise ValueError(f"value: {int((~ok).sum())} values outside the support of the prior "
                                 f"({self.transform.domain})")

    # -- shapes ---------------------------------------------------------------------------------
    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(FlowDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        for k in ("net", "transform", "temperature", "_net_shape", "_squeeze", "context_dim",
                  "context_low", "context_high", "context_names", "_dtype", "_device"):
            setattr(new, k, getattr(self, k))
        new.context = None if self.context is None else self.context.expand(batch_shape + (self.context_dim,))
        super(FlowDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # -- density and sampling -------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = as_tensor(value, "value")
        self._check_shape(value)
        if self._validate_args:
            self._check_value(value)
        x = self._to_net(value.to(dtype=self._dtype, device=self._device))
        k = len(self._net_shape)
        if self.transform is not None:
            y = self.transform(x)
            ladj = torch.broadcast_to(self.transform.log_abs_det_jacobian(x, y), y.shape)
            ladj = ladj.reshape(*y.shape[: y.ndim - k], -1).sum(-1)
        else:
            y, ladj = x, None
        lead = y.shape[: y.ndim - k]
        full = torch.broadcast_shapes(lead, self.batch_shape)
        ns, d = self._net_shape, self.context_dim
        if self.context is None:
            lp = self.net.log_prob(y.reshape(-1, *ns)).reshape(lead)
        elif lead.numel() == 1:
            # one map, many conditions (the grid engine): the network sees the map once
            c = self.context.expand(full + (d,)).reshape(-1, d)
            lp = self.net.log_prob(y.reshape(1, *ns), c).reshape(full)
        elif self.batch_shape.numel() == 1:
            lp = self.net.log_prob(y.reshape(-1, *ns), self.context.reshape(d)).reshape(lead)
        else:
            ye = y.expand(full + ns).reshape(-1, *ns)
            ce = self.context.expand(full + (d,)).reshape(-1, d)
            lp = self.net.log_prob(ye, ce).reshape(full)
        if ladj is not None:
            lp = lp + ladj
        return lp.expand(full) if lp.shape != full else lp

    def rsample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        n = shape.numel()
        if self.context is None:
            y = self.net.sample(n, temperature=self.temperature)
        else:
            c = self.context.expand(shape + (self.context_dim,)).reshape(n, self.context_dim)
            y = self.net.sample(n, c, temperature=self.temperature)
        y = y.reshape(shape + self._net_shape)
        x = self.transform.inv(y) if self.transform is not None else y
        return self._from_net(x)

    def __repr__(self) -> str:
        return (f"FlowDistribution(net={type(self.net).__name__}, batch_shape={tuple(self.batch_shape)}, "
                f"event_shape={tuple(self.event_shape)})")
