r"""Training objectives per network kind, in nats per map, and the bits-per-pixel convention.

* flows (glow, cglow, maf): negative log-likelihood :math:`-\log p(y \mid c)` of the map in
  network space (``model.log_prob(y[, context])``);
* VAE: negative evidence lower bound :math:`-\mathrm{ELBO}(y)` (``model.elbo(y)``), an upper bound
  on the NLL;
* GAN: no likelihood; WGAN-GP has its own trainer (:mod:`bayessky.train.gan`).

The optimiser minimises the batch mean **per pixel** (HIGlow's loss; it keeps the gradient-clip
threshold of 2 meaningful whatever the map size). Reported numbers:

    nll_per_map     mean over maps of -log p(y), nats
    nll_per_pixel   nll_per_map / n_pix,  n_pix = C * H * W
    bits_per_pixel  nll_per_map / (n_pix * ln 2)

Convention (dequantisation-free): the maps are continuous real-valued fields, not 8-bit images,
so no uniform dequantisation noise is added and no ``+ log 256`` offset appears. The numbers are
differential entropies of the *transformed* maps ``y = T(x)`` and can be negative; they change
with the transform (standardising by ``std`` shifts bits/pixel by ``log2 std``). The NLL of the
physical maps is ``nll_per_map - mean sum_pixels log|dT/dx|`` (:func:`physical_nll`).
"""

from __future__ import annotations

import math

import torch

__all__ = ["Objective", "FlowNLL", "NegativeELBO", "objective_for", "bits_per_pixel", "physical_nll"]


class Objective:
    """A per-map loss in nats: ``objective(model, x, context) -> (B,)``; ``name`` prefixes metrics."""

    name = "loss"

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FlowNLL(Objective):
    """``-model.log_prob(x[, context])`` (the context is passed only when given)."""

    name = "nll"

    def __call__(self, model, x, context):
        lp = model.log_prob(x) if context is None else model.log_prob(x, context)
        return -lp


class NegativeELBO(Objective):
    """``-model.elbo(x, beta=beta)`` (reparametrised, so its gradient is unbiased)."""

    name = "neg_elbo"

    def __init__(self, beta: float = 1.0):
        self.beta = float(beta)

    def __call__(self, model, x, context):
        if context is not None:
            raise ValueError("context: the VAE objective is unconditional, got a context")
        return -model.elbo(x, beta=self.beta) if self.beta != 1.0 else -model.elbo(x)

    def __repr__(self) -> str:
        return f"NegativeELBO(beta={self.beta})"


def objective_for(name: str | Objective) -> Objective:
    """``"nll"`` -> :class:`FlowNLL`, ``"elbo"`` -> :class:`NegativeELBO`; objects pass through."""
    if isinstance(name, Objective):
        return name
    if name == "nll":
        return FlowNLL()
    if name == "elbo":
        return NegativeELBO()
    raise ValueError(f"objective: expected 'nll', 'elbo' or an Objective, got {name!r} "
                     "(GANs train with bayessky.train.gan.fit_wgan_gp)")


def bits_per_pixel(nll_per_map: float, n_pix: int) -> float:
    """``nll_per_map / (n_pix ln 2)``: nats per map -> bits per pixel."""
    return float(nll_per_map) / (int(n_pix) * math.log(2.0))


@torch.no_grad()
def physical_nll(nll_per_map: float, transform, raw_maps: torch.Tensor, batch_size: int = 1024) -> float:
    """NLL per map of the physical maps: ``nll_per_map - mean_maps sum_pixels log|dT/dx|``.

    ``raw_maps`` (N, ...) are the same held-out maps in physical units, before ``transform``.
    """
    total = 0.0
    for i in range(0, raw_maps.shape[0], batch_size):
        x = raw_maps[i:i + batch_size].to(torch.float64)
        total += float(transform.log_abs_det_jacobian(x, transform(x)).expand_as(x).sum())
    return float(nll_per_map) - total / raw_maps.shape[0]
