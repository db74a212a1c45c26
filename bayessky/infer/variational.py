"""Stochastic variational inference (Pyro ``Trace_ELBO`` with an autoguide) -> InferenceData.

Guides by name: ``"normal"`` (``AutoNormal``, mean field), ``"mvn"`` (``AutoMultivariateNormal``,
full covariance in unconstrained space; D^2 parameters), ``"lowrank"``
(``AutoLowRankMultivariateNormal``, diagonal + rank-``rank`` covariance, for maps), ``"flow"``
(``AutoIAFNormal``, inverse autoregressive flow over the flat latent), or any callable: an
``AutoGuide`` subclass (instantiated with the model) or a ready guide function/instance.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro.infer.autoguide import (
    AutoGuide,
    AutoIAFNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

from ._checks import check_int, check_positive, check_seed, explain_data_errors
from ._compat import add_group
from ._idata import build_inference_data
from ._model import BatchEvaluator, seeded
from .optimize import fit_guide, guide_draws, resolve_init

__all__ = ["svi", "make_guide"]

_GUIDES = ("normal", "mvn", "lowrank", "flow")


def make_guide(model: Callable, guide="normal", *, init_fn=None, rank: int | None = None,
               init_scale: float = 0.1, flow_transforms: int = 2, flow_hidden: int | None = None):
    """Build the guide named by ``guide`` (see module docstring) for ``model``."""
    if isinstance(guide, str):
        if guide == "normal":
            return AutoNormal(model, init_loc_fn=init_fn, init_scale=init_scale)
        if guide == "mvn":
            return AutoMultivariateNormal(model, init_loc_fn=init_fn, init_scale=init_scale)
        if guide == "lowrank":
            return AutoLowRankMultivariateNormal(model, init_loc_fn=init_fn, init_scale=init_scale,
                                                 rank=rank)
        if guide == "flow":
            hidden = None if flow_hidden is None else [flow_hidden, flow_hidden]
            return AutoIAFNormal(model, hidden_dim=hidden, num_transforms=flow_transforms)
        raise ValueError(f"svi: guide must be one of {list(_GUIDES)} or a callable, got {guide!r}")
    if isinstance(guide, type) and issubclass(guide, AutoGuide):
        return guide(model)
    if callable(guide):
        return guide
    raise ValueError(f"svi: guide must be one of {list(_GUIDES)} or a callable, got {guide!r}")


def svi(
    model: Callable,
    *args,
    guide="normal",
    steps: int = 2000,
    num_samples: int = 1000,
    lr: float = 0.01,
    final_lr: float | None = None,
    num_particles: int = 1,
    rank: int | None = None,
    init_strategy="median",
    init_scale: float = 0.1,
    progress_bar: bool = False,
    seed: int | None = 0,
    **model_kwargs,
):
    r"""Fit a variational posterior by maximising the ELBO, then draw from it.

    Arguments:
        model: a Pyro model; ``*args`` and ``**model_kwargs`` are passed to it.
        guide: ``"normal"``, ``"mvn"``, ``"lowrank"``, ``"flow"`` or a callable (module docstring).
        steps: Adam steps; the learning rate decays geometrically from ``lr`` to ``final_lr``
            (default: constant).
        num_samples: draws from the fitted guide in the posterior group (one chain).
        num_particles: ELBO particles per step (variance of the gradient ~ 1/num_particles).
        rank: rank of the ``"lowrank"`` covariance (default ~sqrt(D)).

    Returns:
        InferenceData with ``posterior`` (guide draws of latent sites + deterministic sites),
        ``log_likelihood``, ``observed_data`` and a group ``optimization`` with the per-step
        ``loss`` (= -ELBO, a stochastic estimate; dim ``step``).

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(data):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     pyro.sample("obs", dist.Normal(mu, 1.0).expand([3]).to_event(1), obs=data)
        >>> idata = svi(model, torch.tensor([1.0, 2.0, 3.0]), steps=200, num_samples=100, lr=0.05)
        >>> idata.posterior["mu"].shape
        (1, 100)
    """
    steps = check_int("svi", "steps", steps)
    num_samples = check_int("svi", "num_samples", num_samples)
    num_particles = check_int("svi", "num_particles", num_particles)
    lr = check_positive("svi", "lr", lr)
    final_lr = check_positive("svi", "final_lr", final_lr, optional=True)
    init_scale = check_positive("svi", "init_scale", init_scale)
    if rank is not None:
        rank = check_int("svi", "rank", rank)
    seed = check_seed("svi", seed)
    # a private parameter store: guides of earlier fits (other shapes, same names) must not leak in
    with seeded(seed), pyro.get_param_store().scope():
        evaluator = BatchEvaluator(model, args, model_kwargs, name="svi")
        if not evaluator.info.latent:
            raise ValueError("svi: the model has no latent sample sites")
        init_fn = resolve_init("svi", init_strategy, model, args, model_kwargs, info=evaluator.info,
                               seed=seed)
        g = make_guide(model, guide, init_fn=init_fn, rank=rank, init_scale=init_scale)
        with explain_data_errors("svi", model, args):
            losses = fit_guide(model, g, args, model_kwargs, steps=steps, optimizer="adam", lr=lr,
                               final_lr=final_lr, num_particles=num_particles, name="svi",
                               progress_bar=progress_bar)
        draws = guide_draws(g, args, model_kwargs, evaluator.info, num_samples)
        samples = {k: v.unsqueeze(0) for k, v in draws.items()}
        idata = build_inference_data(
            evaluator, samples, None,
            {"inference_library": "pyro", "engine": "svi",
             "guide": guide if isinstance(guide, str) else getattr(guide, "__name__", "callable"),
             "seed": -1 if seed is None else seed})
        loss = torch.tensor(losses, dtype=torch.float64)
        return add_group(idata, "optimization", {"loss": loss}, {"loss": ["step"]})
