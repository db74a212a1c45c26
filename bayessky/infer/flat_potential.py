r"""The flat unconstrained potential of a Pyro model, for samplers and optimisers of your own.

.. math:: U(z) = -\log p(x(z), \mathrm{data}) - \log |\det \partial x / \partial z|,

``z`` the latent sites mapped to the real line (``biject_to`` of each support) and concatenated
in sorted name order. This is the potential the engines of :mod:`bayessky.infer` sample; use it
to drive :func:`bayessky.infer.fast_nuts.sample` with your own preconditioner, or to check a
model's density.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ._model import FlatPotential, TracedPotential, init_strategy_fn

__all__ = ["Potential", "potential"]


class Potential:
    """``U(z)`` of a model on a flat vector ``z`` (B, D) -> (B,), and the maps between ``z`` and sites.

    Attributes:
        dim: D. names: latent site names in the order of ``z``. shapes: their unconstrained shapes.
        initial: (1, D) a starting point drawn by the ``init_strategy``.
    """

    def __init__(self, flat: FlatPotential, jit: bool = False):
        self._flat = flat
        self._call = TracedPotential(flat, name="potential") if jit else flat
        self.dim = flat.dim
        self.names = list(flat.names)
        self.shapes = dict(flat.u_shapes)
        self.initial = flat.initial

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Potential energy: (B, D) -> (B,) (differentiable)."""
        return self._call(z)

    def unflatten(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """(..., D) -> unconstrained site values (..., *shape)."""
        return self._flat.unflatten(z)

    def constrain(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """(..., D) -> constrained latent site values (..., *shape)."""
        return self._flat.constrain(z)

    def flatten(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Constrained latent site values (B, *shape) -> z (B, D) (inverse of :meth:`constrain`)."""
        t = self._flat.transforms
        return self._flat.flatten({k: t[k](torch.as_tensor(values[k])) for k in self.names})

    def sites(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latent and deterministic site values at z (B, D): name -> (B, *shape)."""
        return dict(self._flat.evaluator(self.constrain(z)).values)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` of the latent sites alone (prior density of z, incl. the Jacobian): (B,).
        ``U(z) = -log_prior(z) - log_likelihood(z)``."""
        us = self.unflatten(z)
        xs = {k: self._flat.transforms[k].inv(u) for k, u in us.items()}
        res = self._flat.evaluator(xs)
        lp = res.total(self._flat.evaluator.info.latent)
        for k in self.names:  # the transforms map x -> z: their log|dz/dx| = -log|dx/dz|
            ladj = self._flat.transforms[k].log_abs_det_jacobian(xs[k], us[k])
            lp = lp - ladj.reshape(z.shape[0], -1).sum(-1)
        return lp


def potential(model, *args, init_strategy="uniform", jit: bool = False, **kwargs) -> Potential:
    """The flat unconstrained potential of ``model(*args, **kwargs)`` (see the module docstring).

    Arguments:
        model, args, kwargs: a Pyro model and its arguments (data and options).
        init_strategy: how :attr:`Potential.initial` is drawn ("uniform", "median", "mean",
            "sample", a dict of site values or a Pyro init function).
        jit: trace the potential with ``torch.jit.trace`` (checked against the eager one; faster
            for models of many small operations).

    Example::

        pot = bayessky.infer.potential(model, data, mask=mask)
        u = pot(z)                          # (B,) potential energy
        I = pot.sites(z)["I"]               # deterministic sites at z
    """
    flat = FlatPotential(model, args, kwargs, num_chains=1,
                         init_strategy=init_strategy_fn(init_strategy), name="potential")
    return Potential(flat, jit=jit)
