"""Conditional masked autoregressive flow (MAF) on vectors, and its map wrapper (the HIFlow baseline).

Each transform is a MADE giving, for feature i, a shift mu_i and log-scale alpha_i that depend
only on the features before i (in that transform's order) and on the context:

.. math:: u_i = (x_i - \\mu_i(x_{<i}, c))\\, e^{-\\alpha_i(x_{<i}, c)}, \\qquad
          \\log|\\det \\partial u / \\partial x| = -\\sum_i \\alpha_i .

alpha is soft-clipped to (-7, 7) (as in zuko), so far tails stay finite. Densities are one pass
per transform; sampling inverts each transform by D sequential passes (the price of MAF). No
BatchNorm between transforms: it makes the density depend on train/eval mode and on batch
statistics, which a prior inside an inference engine must not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .._validate import as_tensor, check_map
from . import _context
from .coupling import ACTIVATIONS

__all__ = ["MADE", "MAF", "MapMAF"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LOG_SCALE_BOUND = 7.0


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation, conditioned on a context vector.

    Hidden unit degrees cycle through 1..D-1 (deterministic, Germain et al.'s rule): a hidden unit
    of degree k sees inputs of degree <= k, an output of degree i sees hidden units of degree < i.
    The context feeds every unit of the first hidden layer (it is not masked).

    References:
        MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015),
        https://arxiv.org/abs/1502.03509

    Arguments:
        features: D.
        context_dim: context length (0: unconditional).
        hidden: widths of the hidden layers.
        degrees: (D,) input degrees, a permutation of 1..D (the autoregressive order).
        activation: "relu", "silu", "elu" or "tanh".
    """

    def __init__(self, features: int, context_dim: int, hidden: Sequence[int], degrees: torch.Tensor,
                 activation: str = "relu"):
        super().__init__()
        d = features
        degs = [degrees.long()]
        for h in hidden:
            # D = 1: degree 0 units see no input, only the context, and feed the single output
            degs.append(torch.arange(h) % max(1, d - 1) + min(1, d - 1))
        sizes = [d, *hidden, 2 * d]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for i, layer in enumerate(self.layers[:-1]):
            mask = degs[i + 1][:, None] >= degs[i][None, :]
            self.register_buffer(f"mask{i}", mask.to(layer.weight.dtype))
        out_deg = torch.cat([degs[0], degs[0]])
        last = len(self.layers) - 1
        mask = out_deg[:, None] > degs[-1][None, :]
        self.register_buffer(f"mask{last}", mask.to(self.layers[-1].weight.dtype))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)
        self.context = nn.Linear(context_dim, hidden[0], bias=False) if context_dim else None
        self.act = ACTIVATIONS[activation]
        self.features = d

    def masked(self) -> list[torch.Tensor]:
        """The masked weight matrices (computed once per pass, reused by the sampling sweeps)."""
        return [layer.weight * getattr(self, f"mask{i}") for i, layer in enumerate(self.layers)]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                weights: list[torch.Tensor] | None = None, context_term: torch.Tensor | None = None):
        """(B, D), (B, d) -> (mu, alpha), each (B, D); alpha is soft-clipped to (-7, 7).

        ``weights`` (from :meth:`masked`) and ``context_term`` (the context's contribution to the
        first layer) may be passed in precomputed, as the sequential sampler does.
        """
        weights = self.masked() if weights is None else weights
        if context_term is None and self.context is not None:
            context_term = self.context(context)
        h = x
        for i, (layer, w) in enumerate(zip(self.layers, weights)):
            h = nn.functional.linear(h, w, layer.bias)
            if i == 0 and context_term is not None:
                h = h + context_term
            if i < len(self.layers) - 1:
                h = self.act(h)
        raw = h[:, self.features:]
        # soft clip of the log-scale to (-7, 7) (as zuko's MAF): at most e^7 per transform, so
        # densities far in the tails stay finite instead of overflowing to inf - inf = NaN
        return h[:, : self.features], raw / (1.0 + raw.abs() / LOG_SCALE_BOUND)


class MAF(nn.Module):
    r"""Masked autoregressive flow p(x | c) on (D,) vectors (Papamakarios et al., 2017).

    References:
        Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou & Murray, 2017),
        https://arxiv.org/abs/1705.07057

    Arguments:
        features: D, the vector length.
        context_dim: d (0: unconditional).
        transforms: number of MADE transforms.
        hidden: hidden widths of each MADE.
        order: "reverse" (alternate natural and reversed orders) or "random" (fixed by ``seed``).
        seed: seed of the random orders.
        activation: MADE activation.
        context_low, context_high: (d,) physical range of the context, mapped to [-1, 1].

    Example:
        >>> flow = MAF(3, context_dim=2, transforms=2, hidden=(16,))
        >>> x, c = torch.randn(4, 3), torch.randn(4, 2)
        >>> flow.log_prob(x, c).shape
        torch.Size([4])
        >>> flow.sample(5, torch.zeros(2)).shape
        torch.Size([5, 3])
    """

    def __init__(self, features: int, context_dim: int = 0, transforms: int = 5,
                 hidden: Sequence[int] = (512, 512), *, order: str = "reverse", seed: int = 0,
                 activation: str = "relu", context_low: Sequence[float] | None = None,
                 context_high: Sequence[float] | None = None):
        super().__init__()
        features, context_dim, transforms = int(features), int(context_dim), int(transforms)
        hidden = [int(h) for h in ((hidden,) if isinstance(hidden, int) else hidden)]
        if features < 1 or transforms < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"MAF: need features >= 1, transforms >= 1 and hidden widths >= 1, got "
                             f"features={features}, transforms={transforms}, hidden={hidden}")
        if order not in ("reverse", "random"):
            raise ValueError(f"order: expected 'reverse' or 'random', got {order!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.features = features
        self.shape = (features,)
        self.context_dim = context_dim
        gen = torch.Generator().manual_seed(int(seed))
        natural = torch.arange(1, features + 1)
        self.mades = nn.ModuleList()
        for k in range(transforms):
            if order == "random":
                degrees = torch.randperm(features, generator=gen) + 1
            else:
                degrees = natural if k % 2 == 0 else natural.flip(0)
            self.mades.append(MADE(features, context_dim, hidden, degrees, activation))
        self._arch = {"features": features, "context_dim": context_dim, "transforms": transforms,
                      "hidden": hidden, "order": order, "seed": int(seed), "activation": activation}
        if context_dim:
            _context.register_bounds(self, context_dim, context_low, context_high)

    @property
    def architecture(self) -> dict:
        """Constructor keyword arguments (JSON-able)."""
        arch = dict(self._arch)
        if self.context_dim:
            arch["context_low"] = [float(v) for v in self.context_low]
            arch["context_high"] = [float(v) for v in self.context_high]
        return arch

    def _ref(self) -> torch.Tensor:
        return self.mades[0].layers[0].weight

    def _context(self, context):
        return _context.as_context(context, self.context_dim, self._ref())

    def _batch(self, x, context):
        """Broadcast x (..., D) against context (..., d); flatten the batch."""
        ref = self._ref()
        x = as_tensor(x, "x", dtype=ref.dtype, device=ref.device)
        if x.ndim < 1 or x.shape[-1] != self.features:
            raise ValueError(f"x: expected shape (..., {self.features}), got {tuple(x.shape)}")
        c = self._context(context)
        if c is None:
            return x.reshape(-1, self.features), None, x.shape[:-1]
        lead = torch.broadcast_shapes(x.shape[:-1], c.shape[:-1])
        x = x.expand(lead + (self.features,)).reshape(-1, self.features)
        c = c.expand(lead + (self.context_dim,)).reshape(-1, self.context_dim)
        return x, _context.scale(self, c), lead

    def _forward(self, x, c):
        ld = x.new_zeros(x.shape[0])
        for made in self.mades:
            mu, alpha = made(x, c)
            x = (x - mu) * torch.exp(-alpha)
            ld = ld - alpha.sum(-1)
        return x, ld

    def _inverse(self, u, c):
        ld = u.new_zeros(u.shape[0])
        for made in reversed(self.mades):
            # fixed-point sweep: after sweep k the features of degree <= k are exact, so D sweeps
            # invert exactly; no in-place writes, so the result is differentiable in u and c
            x = torch.zeros_like(u)
            weights = made.masked()
            ct = made.context(c) if made.context is not None else None
            for _ in range(self.features):
                mu, alpha = made(x, c, weights, ct)
                x = mu + u * torch.exp(alpha)
            ld = ld + alpha.sum(-1)
            u = x
        return u, ld

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """x (..., D) -> (u (B, D), log|det du/dx| (B,)), B the flattened broadcast batch."""
        x, c, _ = self._batch(x, context)
        return self._forward(x, c)

    def inverse(self, u: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """u (B, D) -> x (B, D); ``context`` (d,) or (B, d)."""
        ref = self._ref()
        u = as_tensor(u, "u", dtype=ref.dtype, device=ref.device)
        return self._inverse(u, self._sample_context(context, u.shape[0]))[0]

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | context) in nats; shape = broadcast of x's and the context's batch shapes."""
        x, c, lead = self._batch(x, context)
        u, ld = self._forward(x, c)
        lp = -0.5 * u.square().sum(-1) - self.features * _HALF_LOG_2PI + ld
        return lp.reshape(lead)

    def _sample_context(self, context, n):
        c = _context.per_sample(self._context(context), n)
        return None if c is None else _context.scale(self, c)

    def sample(self, n: int, context: torch.Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` vectors (n, D), differentiable in the context; context (d,) or (n, d)."""
        ref = self._ref()
        c = self._sample_context(context, int(n))
        u = torch.randn((int(n), self.features), generator=generator, dtype=ref.dtype, device=ref.device)
        return self._inverse(u * temperature, c)[0]


class MapMAF(MAF):
    """A :class:`MAF` over flattened (C, H, W) maps: the HIFlow baseline (Hassan et al., 2022).

    Treats every pixel as one feature, ignoring locality; kept as the baseline that Glow beats at
    high k. Sampling costs C*H*W sequential passes per transform.

    Arguments:
        shape: (channels, height, width).
        context_dim, transforms, hidden, order, seed, activation, context_low, context_high: as in
            :class:`MAF`.

    Example:
        >>> flow = MapMAF((1, 4, 4), context_dim=2, transforms=2, hidden=(32,))
        >>> flow.log_prob(torch.randn(3, 1, 4, 4), torch.zeros(2)).shape
        torch.Size([3])
    """

    def __init__(self, shape: Sequence[int], context_dim: int = 0, transforms: int = 5,
                 hidden: Sequence[int] = (512, 512), **kwargs):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape: expected (channels, height, width), got {shape}")
        super().__init__(math.prod(shape), context_dim, transforms, hidden, **kwargs)
        self.shape = shape
        del self._arch["features"]
        self._arch = {"shape": list(shape), **self._arch}

    def _batch(self, x, context):
        ref = self._ref()
        x = check_map(x, "x", min_ndim=3, shape=self.shape, finite=False, dtype=ref.dtype, device=ref.device)
        return super()._batch(x.reshape(*x.shape[:-3], self.features), context)

    def inverse(self, u: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return super().inverse(u, context).reshape(-1, *self.shape)

    def sample(self, n: int, context: torch.Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        return super().sample(n, context, temperature, generator).reshape(int(n), *self.shape)
