"""Stochastic variational inference (Pyro ``Trace_ELBO`` with an autoguide) -> InferenceData.

Guides by name: ``"normal"`` (``AutoNormal``, mean field), ``"mvn"`` (``AutoMultivariateNormal``,
full covariance in unconstrained space; D^2 parameters), ``"lowrank"``
(``AutoLowRankMultivariateNormal``, diagonal + rank-``rank`` covariance, for maps), ``"flow"``
(``AutoIAFNormal``, inverse autoregressive flow over the flat latent), or any callable: an
``AutoGuide`` subclass (instantiated with the model) or a ready guide function/instance.
"""

from __future__ import annotations

import warnings
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
# measured on a 144-pixel Wiener posterior (benchmarks/svi_wiener.py): with 1 particle the dense
# covariance of "mvn" stays ~5-10 % too narrow at any step count; 16 vectorised particles cost ~2x
# per step and reach ~1-2 % in 1000 steps
_DEFAULT_PARTICLES = {"mvn": 16}
_SNR_CONVERGED = 0.2


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


def _check_args(*, guide, steps, num_samples, lr, final_lr, num_particles, rank, init_scale, seed) -> dict:
    """svi's arguments checked (and defaults resolved) before the model is touched."""
    if isinstance(guide, str) and guide not in _GUIDES:
        raise ValueError(f"svi: guide must be one of {list(_GUIDES)} or a callable, got {guide!r}")
    if num_particles is None:
        num_particles = _DEFAULT_PARTICLES.get(guide, 1) if isinstance(guide, str) else 1
    lr = check_positive("svi", "lr", lr)
    final_lr = check_positive("svi", "final_lr", final_lr, optional=True)
    return dict(steps=check_int("svi", "steps", steps),
                num_samples=check_int("svi", "num_samples", num_samples),
                num_particles=check_int("svi", "num_particles", num_particles), lr=lr,
                final_lr=lr / 100.0 if final_lr is None else final_lr,
                init_scale=check_positive("svi", "init_scale", init_scale),
                rank=None if rank is None else check_int("svi", "rank", rank),
                seed=check_seed("svi", seed))


def svi(
    model: Callable,
    *args,
    guide="normal",
    steps: int = 1000,
    num_samples: int = 1000,
    lr: float = 0.05,
    final_lr: float | None = None,
    num_particles: int | None = None,
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
        steps: ``ClippedAdam`` steps. The learning rate starts large (``lr``) to move the guide
            quickly from its start, and decays geometrically to ``final_lr`` (default ``lr / 100``;
            pass ``final_lr=lr`` for a constant rate) so that the parameters settle instead of
            jittering at the size of the last steps.
        num_samples: draws from the fitted guide in the posterior group (one chain).
        num_particles: ELBO particles per step (variance of the gradient ~ 1/num_particles), drawn
            in one vectorised pass where the model broadcasts. Default: 16 for ``"mvn"``, whose
            D(D+1)/2 covariance parameters need the low-noise gradient to reach the right
            posterior widths, 1 otherwise.
        rank: rank of the ``"lowrank"`` covariance (default ~sqrt(D)).

    Returns:
        InferenceData with ``posterior`` (guide draws of latent sites + deterministic sites),
        ``log_likelihood``, ``observed_data`` and a group ``optimization`` with the per-step
        ``loss`` (= -ELBO, a stochastic estimate; dim ``step``). ``attrs["converged"]`` (1 or 0)
        says whether the final ELBO gradient was within its noise (``attrs["grad_snr"]`` <= 0.2,
        :func:`~bayessky.infer.optimize.gradient_snr`); if not, a one-line ``UserWarning`` names
        the steps run and suggests more.

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(data):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     pyro.sample("obs", dist.Normal(mu, 1.0).expand([3]).to_event(1), obs=data)
        >>> idata = svi(model, torch.tensor([1.0, 2.0, 3.0]), steps=200, num_samples=100, lr=0.05)
        >>> idata.posterior["mu"].shape
        (1, 100)
    """
    a = _check_args(guide=guide, steps=steps, num_samples=num_samples, lr=lr, final_lr=final_lr,
                    num_particles=num_particles, rank=rank, init_scale=init_scale, seed=seed)
    steps, num_samples, lr, final_lr, num_particles, rank, init_scale, seed = (
        a[k] for k in ("steps", "num_samples", "lr", "final_lr", "num_particles", "rank", "init_scale",
                       "seed"))
    # a private parameter store: guides of earlier fits (other shapes, same names) must not leak in
    with seeded(seed), pyro.get_param_store().scope():
        evaluator = BatchEvaluator(model, args, model_kwargs, name="svi")
        if not evaluator.info.latent:
            raise ValueError("svi: the model has no latent sample sites")
        init_fn = resolve_init("svi", init_strategy, model, args, model_kwargs, info=evaluator.info,
                               seed=seed)
        g = make_guide(model, guide, init_fn=init_fn, rank=rank, init_scale=init_scale)
        diag: dict = {}
        with explain_data_errors("svi", model, args):
            losses = fit_guide(model, g, args, model_kwargs, steps=steps, optimizer="adam", lr=lr,
                               final_lr=final_lr, num_particles=num_particles, name="svi",
                               progress_bar=progress_bar, diagnostics=diag)
        draws = guide_draws(g, args, model_kwargs, evaluator.info, num_samples)
        samples = {k: v.unsqueeze(0) for k, v in draws.items()}
        # converged when the final gradient is close to noise (optimize.gradient_snr: ~0.05 for
        # pure noise, >= 0.4 for the unconverged fits measured; 0.2 between them)
        snr = diag["grad_snr"]
        converged = bool(snr <= _SNR_CONVERGED)
        if not converged:
            warnings.warn(f"svi: not converged after {steps} steps (gradient signal-to-noise {snr:.3g} > "
                          f"{_SNR_CONVERGED}); rerun with more steps, e.g. steps={2 * steps}",
                          UserWarning, stacklevel=2)
        idata = build_inference_data(
            evaluator, samples, None,
            {"inference_library": "pyro", "engine": "svi",
             "guide": guide if isinstance(guide, str) else getattr(guide, "__name__", "callable"),
             "seed": -1 if seed is None else seed, "steps": steps, "lr": lr, "final_lr": final_lr,
             "num_particles": num_particles, "converged": int(converged), "grad_snr": snr})
        loss = torch.tensor(losses, dtype=torch.float64)
        return add_group(idata, "optimization", {"loss": loss}, {"loss": ["step"]})
