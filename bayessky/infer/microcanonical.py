r"""Microcanonical Langevin Monte Carlo on a Pyro model -> ``arviz.InferenceData``.

MCLMC (Robnik & Seljak 2023) moves a particle with a *unit* velocity ``u`` through the
preconditioned parameter space under the isokinetic (energy-sampling) dynamics

.. math:: \dot y = u, \qquad \dot u = -(I - u u^T)\, \nabla_y U(y) / (d - 1),

``U = -log p`` the model's flat unconstrained potential and ``y = x / sigma`` (``sigma`` (D,) the
adapted diagonal preconditioner), whose marginal stationary distribution in ``y`` is ``exp(-U)``;
Langevin noise refreshes the velocity partially after every step,
``u <- (u + nu z) / |u + nu z|`` with ``nu = sqrt((exp(2 eps / L) - 1) / d)``, so that it decorrelates
over the momentum decoherence length ``L``. The integrator (minimal-norm by default, or leapfrog)
is not corrected by an accept/reject step: every integration step is a draw, and its
discretisation error biases the stationary distribution.

**Bias control (unadjusted).** The step size is tuned so that the energy error per step has
``Var[Delta E] / d = desired_energy_var`` (default ``5e-4``, Robnik et al. 2023). The bias of the
draws' moments grows with this variance, and the step size only with its sixth root
(``Var[Delta E] ~ eps^6``): the default keeps the bias of variances at the percent level on
Gaussian posteriors (under the Monte Carlo error of a few thousand effective draws), while e.g.
``desired_energy_var=0.05`` takes steps ~2x longer (fewer gradients per effective draw) at a
bias that becomes visible. For exact sampling use ``adjusted=True``.

**Adjusted (MAMS).** ``adjusted=True`` runs Metropolis-adjusted microcanonical HMC (Robnik,
Cohn-Gordon & Seljak 2025): each transition draws a fresh uniform velocity, integrates ``n`` steps
(uniform on ``1 .. 2 L/eps - 1``) and accepts with probability ``min(1, exp(-Delta E))``; the step
size is tuned by dual averaging to a mean acceptance of ``target_accept`` (0.9). Its draws are
exact (asymptotically unbiased) for any step size.

All chains advance together: the potential is evaluated once per integration step for the whole
(chains, D) batch; step size, ``L`` and preconditioner are shared and estimated from all chains.
See :mod:`bayessky.infer._mclmc_run` for the warm-up.

References:
    Microcanonical Hamiltonian Monte Carlo (Robnik, De Luca, Silverstein & Seljak, 2023, JMLR),
    https://arxiv.org/abs/2212.08549
    Fluctuation without dissipation: Microcanonical Langevin Monte Carlo (Robnik & Seljak, 2023),
    https://arxiv.org/abs/2303.18221
    Metropolis Adjusted Microcanonical Hamiltonian Monte Carlo (Robnik, Cohn-Gordon & Seljak,
    2025), https://arxiv.org/abs/2503.01707
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable

import numpy as np
import torch

from ._checks import check_int, check_positive, check_seed, explain_data_errors
from ._idata import build_inference_data
from ._isokinetic import INTEGRATORS
from ._mclmc_run import run
from ._model import BatchEvaluator, FlatPotential, TracedPotential, seeded
from .optimize import resolve_init

__all__ = ["mclmc"]


def _check_args(num_samples, warmup_steps, num_chains, seed, step_size, L, desired_energy_var,
                target_accept, integrator, thinning):
    name = "mclmc"
    out = dict(num_samples=check_int(name, "num_samples", num_samples),
               warmup_steps=check_int(name, "warmup_steps", warmup_steps, minimum=0),
               num_chains=check_int(name, "num_chains", num_chains),
               seed=check_seed(name, seed), thinning=check_int(name, "thinning", thinning),
               step_size=check_positive(name, "step_size", step_size, optional=True),
               L=check_positive(name, "L", L, optional=True),
               desired_energy_var=check_positive(name, "desired_energy_var", desired_energy_var))
    if (not isinstance(target_accept, numbers.Real) or isinstance(target_accept, bool)
            or not 0.0 < float(target_accept) < 1.0):
        raise ValueError(f"{name}: target_accept must lie in (0, 1), got {target_accept!r}")
    if integrator not in INTEGRATORS:
        raise ValueError(f"{name}: integrator must be one of {sorted(INTEGRATORS)}, got {integrator!r}")
    return out


def mclmc(
    model: Callable,
    *args,
    num_samples: int = 1000,
    warmup_steps: int = 1000,
    num_chains: int = 4,
    adjusted: bool = False,
    seed: int | None = None,
    step_size: float | None = None,
    L: float | None = None,
    desired_energy_var: float = 5e-4,
    diagonal_preconditioning: bool = True,
    target_accept: float = 0.9,
    integrator: str = "minimal_norm",
    thinning: int = 1,
    init_strategy="uniform",
    jit: bool = False,
    progress_bar: bool = True,
    **model_kwargs,
):
    r"""Microcanonical Langevin Monte Carlo (see the module docstring) -> ``arviz.InferenceData``.

    Arguments:
        model: a Pyro model with continuous latent sites; ``*args`` and ``**model_kwargs`` are
            passed to it.
        num_samples: draws kept per chain: integration steps (every ``thinning``-th) when
            unadjusted, Metropolis transitions when adjusted.
        warmup_steps: tuning iterations per chain, discarded. Unadjusted: integration steps
            (30 % burn-in and step size, 30 % + 10 % preconditioner and step size, 30 % ``L``).
            Adjusted: the first half as the unadjusted warm-up, then MAMS transitions: a quarter
            tuning the step size to ``target_accept``, a quarter the trajectory length ``L``.
        num_chains: chains, advanced together in one batch.
        adjusted: Metropolis-adjusted (MAMS, exact) instead of unadjusted MCLMC.
        seed: seeds the sampler's generators and the initialisation (global RNG states are
            restored afterwards); ``None`` draws one from torch's global RNG.
        step_size, L: initial step size and decoherence length of the tuning (default
            ``0.25 sqrt(d)`` and ``sqrt(d)``); with ``warmup_steps=0`` they are used unchanged.
            A given ``L`` is kept (not tuned).
        desired_energy_var: target ``Var[Delta E] / d`` per step of the unadjusted step-size
            tuning (the bias control, see the module docstring); also the first half of the
            adjusted warm-up.
        diagonal_preconditioning: adapt ``sigma`` (D,) from the warm-up draws' variances.
        target_accept: mean acceptance probability targeted by the adjusted step size.
        integrator: ``"minimal_norm"`` (2 gradients per step) or ``"leapfrog"`` (1).
        thinning: unadjusted only: keep every ``thinning``-th step (all steps still cost).
        init_strategy: ``"uniform"``, ``"median"``, ``"mean"``, ``"sample"``, ``"map"``, a dict of
            site values or a Pyro init function; one starting point per chain.
        jit: trace the potential once with ``torch.jit.trace`` (checked against the model, and
            dropped with a warning if they disagree); for map-sized models whose gradient is
            cheap next to Pyro's per-call bookkeeping. The model must not branch on values.
        progress_bar: a tqdm bar over iterations.

    Returns:
        InferenceData with ``posterior`` (latent and deterministic sites, constrained,
        (chain, draw, ...)), ``sample_stats`` (``energy_change``, ``step_size``, ``L``,
        ``diverging`` (a non-finite energy; adjusted also ``Delta E > 1000``), ``lp`` (= -U),
        ``n_steps`` (integration steps per draw) and, adjusted, ``acceptance_rate``),
        ``log_likelihood`` and ``observed_data``. Divergences raise a warning with their count.

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(data):
        ...     mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        ...     pyro.sample("obs", dist.Normal(mu, 1.0).to_event(1), obs=data)
        >>> idata = mclmc(model, torch.tensor([0.1, 0.3]), num_samples=100, warmup_steps=100,
        ...               seed=0, progress_bar=False)
        >>> idata.posterior["mu"].shape
        (4, 100, 2)
    """
    a = _check_args(num_samples, warmup_steps, num_chains, seed, step_size, L, desired_energy_var,
                    target_accept, integrator, thinning)
    seed = a["seed"]
    with seeded(seed):
        run_seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        init_fn = resolve_init("mclmc", init_strategy, model, args, model_kwargs, seed=seed)
        with explain_data_errors("mclmc", model, args):
            pot = FlatPotential(model, args, model_kwargs, num_chains=a["num_chains"],
                                init_strategy=init_fn, name="mclmc")
            potential = TracedPotential(pot, "mclmc") if jit else pot
            out = run(potential, pot.initial.detach(), a["num_samples"], a["warmup_steps"],
                      adjusted=bool(adjusted), integrator=integrator, seed=run_seed,
                      step_size=a["step_size"], L=a["L"], desired_energy_var=a["desired_energy_var"],
                      diagonal_preconditioning=bool(diagonal_preconditioning),
                      target_accept=float(target_accept), thinning=a["thinning"],
                      progress_bar=progress_bar)
        z = out["samples"]
        samples = pot.constrain(z)
        C, S = z.shape[0], z.shape[1]
        stats = {k: out[k] for k in ("energy_change", "diverging", "lp", "n_steps", "acceptance_rate")
                 if k in out}
        stats["step_size"] = np.full((C, S), out["step_size"])
        stats["L"] = np.full((C, S), out["L"])
        n_div = int(stats["diverging"].sum())
        if n_div:
            warnings.warn(f"mclmc: {n_div} divergent {'transitions' if adjusted else 'steps'} after "
                          f"warmup (of {C * S} draws); the step size is too large for some region",
                          stacklevel=2)
        evaluator = BatchEvaluator(model, args, model_kwargs, name="mclmc")
        attrs = {"inference_library": "bayessky.mclmc", "engine": "mclmc",
                 "sampler": "MAMS" if adjusted else "MCLMC", "integrator": integrator,
                 "num_warmup": a["warmup_steps"], "seed": -1 if seed is None else seed,
                 "gradient_calls": out["gradient_calls"],
                 "gradient_calls_warmup": out["gradient_calls_warmup"]}
        return build_inference_data(evaluator, {k: v.detach() for k, v in samples.items()}, stats, attrs)
