"""Affine-invariant ensemble sampling (emcee) of a Pyro model -> InferenceData.

emcee sees the model's log density in unconstrained space, log p(x(z), data) + log|dx/dz|,
evaluated for all walkers in ONE vectorised model call (``vectorize=True``). Walkers become the
``chain`` dimension. Walkers of an ensemble are not independent chains, so treat the R-hat that
ArviZ computes across them as indicative only; the integrated autocorrelation time (emcee's
estimator, per parameter, in attrs) is the diagnostic to trust.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import emcee as _emcee
import numpy as np
import torch

from ._checks import check_int, check_seed, explain_data_errors
from ._idata import build_inference_data
from ._model import FlatPotential, seeded
from .optimize import resolve_init

__all__ = ["emcee"]


def _check_args(*, steps, thin, burn, walkers, seed) -> dict:
    """emcee's arguments checked before the model is touched (walkers >= 2 dim needs the model)."""
    steps = check_int("emcee", "steps", steps)
    burn = steps // 2 if burn is None else check_int("emcee", "burn", burn, minimum=0)
    if burn >= steps:
        raise ValueError(f"emcee: burn must be an integer in [0, steps), got {burn!r}")
    if walkers is not None and (not isinstance(walkers, numbers.Integral) or isinstance(walkers, bool)
                                or walkers < 2 or walkers % 2):
        raise ValueError(f"emcee: walkers must be an even integer >= 2 * dim, got {walkers!r}")
    return dict(steps=steps, thin=check_int("emcee", "thin", thin), burn=burn, seed=check_seed("emcee", seed))


def emcee(
    model: Callable,
    *args,
    walkers: int | None = None,
    steps: int = 2000,
    burn: int | None = None,
    thin: int = 1,
    init_strategy="uniform",
    moves=None,
    progress_bar: bool = False,
    seed: int | None = 0,
    **model_kwargs,
):
    r"""Run ``emcee.EnsembleSampler`` on the model's unconstrained log density.

    Arguments:
        model: a Pyro model; ``*args`` and ``**model_kwargs`` are passed to it.
        walkers: ensemble size (default max(4 D, 16), even; at least 2 D is required).
        steps: ensemble steps in total, including ``burn`` (default steps // 2) discarded ones.
        thin: keep every ``thin``-th step after burn-in.
        init_strategy: how walkers start (default ``"uniform"``: uniform in (-2, 2) in
            unconstrained space, independently per walker; see :func:`bayessky.infer.nuts`). A
            start shared by all walkers (a dict, ``"map"``) becomes a small ball around it
            (relative width 1e-3), as the stretch move needs walkers that span the space.
        moves: emcee moves (default: emcee's stretch move).

    Returns:
        InferenceData with ``posterior`` (walker = chain), ``sample_stats.lp`` (unconstrained
        log density), ``log_likelihood``, ``observed_data``; attrs ``acceptance_fraction``
        (per walker) and ``autocorr_time`` (per flat parameter, emcee's estimate with tol=0).
    """
    a = _check_args(steps=steps, thin=thin, burn=burn, walkers=walkers, seed=seed)
    steps, thin, burn, seed = (a[k] for k in ("steps", "thin", "burn", "seed"))
    with seeded(seed):
        init_fn = resolve_init("emcee", init_strategy, model, args, model_kwargs, seed=seed)
        with explain_data_errors("emcee", model, args):
            probe = FlatPotential(model, args, model_kwargs, num_chains=1, init_strategy=init_fn,
                                  name="emcee")
        D = probe.dim
        if walkers is None:
            walkers = max(4 * D, 16)
            walkers += walkers % 2
        if walkers < 2 * D:  # its type and parity: _check_args
            raise ValueError(f"emcee: walkers must be an even integer >= 2 * dim = {2 * D}, "
                             f"got {walkers!r}")
        walkers = int(walkers)
        pot = FlatPotential(model, args, model_kwargs, num_chains=walkers, init_strategy=init_fn,
                            name="emcee")
        dtype, device = pot.initial.dtype, pot.initial.device

        def log_prob(coords: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                z = torch.as_tensor(coords, dtype=dtype, device=device)
                lp = -pot(z)
            lp = lp.double().cpu().numpy()
            return np.where(np.isfinite(lp), lp, -np.inf)

        rng = np.random.RandomState(None if seed is None else seed)
        sampler = _emcee.EnsembleSampler(walkers, D, log_prob, vectorize=True, moves=moves)
        sampler.random_state = rng.get_state()
        p0 = pot.initial.detach().double().cpu().numpy()
        if np.linalg.matrix_rank(p0 - p0.mean(0)) < D:
            # a single start ("map" or a dict) for every walker: the stretch move needs walkers that
            # span the space, so start from emcee's usual small ball around that point
            p0 = p0 + 1e-3 * (1.0 + np.abs(p0)) * rng.standard_normal(p0.shape)
        with explain_data_errors("emcee", model, args):
            sampler.run_mcmc(p0, steps, progress=progress_bar)
        chain = sampler.get_chain(discard=burn, thin=thin)  # (S, W, D)
        lp = sampler.get_log_prob(discard=burn, thin=thin)  # (S, W)
        z = torch.as_tensor(np.ascontiguousarray(chain.transpose(1, 0, 2)), dtype=dtype, device=device)
        with torch.no_grad():
            samples = pot.constrain(z)
        tau = sampler.get_autocorr_time(discard=burn, quiet=True, tol=0)
        attrs = {"inference_library": "emcee", "engine": "emcee", "num_warmup": burn, "thin": thin,
                 "acceptance_fraction": np.asarray(sampler.acceptance_fraction, dtype=float),
                 "autocorr_time": np.asarray(tau, dtype=float), "seed": -1 if seed is None else seed}
        return build_inference_data(pot.evaluator, samples, {"lp": lp.T}, attrs)
