"""Hamiltonian Monte Carlo engines: ``nuts`` and ``hmc`` over Pyro's MCMC, returning InferenceData.

The Pyro kernels keep only running means of their per-iteration statistics, so two thin
subclasses record, for every kept draw, what ArviZ's ``sample_stats`` expects: ``lp`` (= -U, the
log density in unconstrained space, Jacobian included, as Stan's ``lp__``), ``energy`` (the
Hamiltonian at the start of the trajectory, for the BFMI), ``diverging``, ``acceptance_rate``,
``step_size`` and ``n_steps`` (leapfrog steps = gradient evaluations). They travel back from
worker processes through the kernel's ``diagnostics()``, Pyro's own channel.

``backend="fast"`` hands a batched flat potential (chains, D) -> (chains,) to
``bayessky.infer.fast_nuts.sample``: chains advance together in one batch, and on a CPU with
cores to spare the batch is split across forked processes (``chain_method``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable

import torch
from pyro.infer import HMC, MCMC, NUTS
from pyro.infer.mcmc.util import initialize_model

from . import precondition as _precondition
from ._checks import check_int, check_positive, check_seed, explain_data_errors
from ._idata import build_inference_data
from ._model import BatchEvaluator, FlatPotential, TracedPotential, seeded
from .optimize import resolve_init

__all__ = ["nuts", "hmc"]

_STATS = ("lp", "energy", "diverging", "acceptance_rate", "step_size", "n_steps")


class _Recorder:
    """Mixin recording per-draw statistics of a Pyro HMC/NUTS kernel (post-warmup draws)."""

    def setup(self, warmup_steps, *args, **kwargs):
        self._records = {k: [] for k in _STATS}
        self._n_grad = 0
        self._energy0 = float("nan")
        super().setup(warmup_steps, *args, **kwargs)
        if getattr(self, "_bayessky_wrapped", None) is not self.potential_fn:
            inner = self.potential_fn

            def counting(params):
                self._n_grad += 1
                return inner(params)

            self.potential_fn = counting
            self._bayessky_wrapped = counting

    def _sample_r(self, name):
        r, r_unscaled = super()._sample_r(name)
        pe = self._fetch_from_cache()[1]
        self._energy0 = float(self._kinetic_energy(r_unscaled) + pe)
        return r, r_unscaled

    def sample(self, params):
        n_div, mean_acc, n_grad = len(self._divergences), self._mean_accept_prob, self._n_grad
        step = float(self.step_size)
        out = super().sample(params)
        if self._t > self._warmup_steps:
            n = self._t - self._warmup_steps
            rec = self._records
            # Pyro keeps a running mean m_n = m_{n-1} + (a_n - m_{n-1}) / n; invert it for a_n.
            acc = mean_acc + n * (self._mean_accept_prob - mean_acc)
            rec["acceptance_rate"].append(min(1.0, max(0.0, acc)))  # clip the inversion's rounding
            rec["diverging"].append(len(self._divergences) > n_div)
            pe = self._fetch_from_cache()[1]
            rec["lp"].append(-float(pe) if pe is not None else float("nan"))
            rec["energy"].append(self._energy0)
            rec["step_size"].append(step)
            rec["n_steps"].append(self._n_grad - n_grad)
        return out

    def diagnostics(self):
        d = dict(super().diagnostics())
        d["bayessky_records"] = self._records
        return d


class _NUTS(_Recorder, NUTS):
    pass


class _HMC(_Recorder, HMC):
    pass


def _check_common(name, num_samples, warmup_steps, num_chains, target_accept_prob, seed):
    """Validate the arguments nuts and hmc share; returns (num_samples, warmup_steps, num_chains, seed)."""
    num_samples = check_int(name, "num_samples", num_samples)
    num_chains = check_int(name, "num_chains", num_chains)
    warmup_steps = check_int(name, "warmup_steps", warmup_steps, minimum=0)
    tap = target_accept_prob
    if (not isinstance(tap, numbers.Real) or isinstance(tap, bool)
            or not (0.0 < float(tap) < 1.0)):
        raise ValueError(f"{name}: target_accept_prob must lie in (0, 1), got {tap!r}")
    return num_samples, warmup_steps, num_chains, check_seed(name, seed)


def _warn_divergences(name, diverging):
    n = int(sum(int(d) for chain in diverging for d in chain))
    if n:
        total = sum(len(c) for c in diverging)
        warnings.warn(f"{name}: {n} divergent transitions after warmup (of {total} draws); raise "
                      "target_accept_prob or reparametrise the model", stacklevel=3)


def _run_pyro(kind, model, args, kwargs, *, num_samples, warmup_steps, num_chains, init_fn,
              progress_bar, mp_context, kernel_kw):
    kernel_cls = _NUTS if kind == "nuts" else _HMC
    kernel = kernel_cls(model, init_strategy=init_fn, **kernel_kw)
    initial = None
    if num_chains > 1:
        # distinct starting points per chain, drawn by the init strategy in this process
        initial, _, _, _ = initialize_model(model, args, kwargs, num_chains=num_chains,
                                            init_strategy=init_fn)
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                initial_params=initial, disable_progbar=not progress_bar, mp_context=mp_context)
    # Pyro's jit_compile replays a torch.jit.trace; TorchScript's optimising executor can replace
    # its gradients after the first runs (wrong for the CMB-lensing model, see
    # _model.TracedPotential), so traces run unoptimised here too. The flag is process state:
    # chains in spawned worker processes do not see it.
    with torch.jit.optimized_execution(False):
        mcmc.run(*args, **kwargs)
    samples = mcmc.get_samples(group_by_chain=True)
    # MCMC.diagnostics() also computes split R-hat over every site, which asserts >= 4 draws
    # (pyro.ops.stats.split_gelman_rubin) and is not needed here: read the kernels' own
    # per-chain diagnostics, where our records travel, directly.
    per_chain = getattr(mcmc, "_diagnostics", None)
    if per_chain is not None and all(d is not None and "bayessky_records" in d for d in per_chain):
        recs = [per_chain[c]["bayessky_records"] for c in range(num_chains)]
    else:  # another Pyro layout: the public route (fine for >= 4 draws)
        diag = mcmc.diagnostics()
        recs = [diag["bayessky_records"][f"chain {c}"] for c in range(num_chains)]
    stats = {k: [r[k] for r in recs] for k in _STATS}
    return samples, stats


def _fast_chain_method(name, chain_method, num_chains, device):
    """``None`` -> "parallel" on a multi-core CPU with fork and >= 2 chains, else "vectorized"."""
    from . import fast_nuts

    if chain_method is not None:  # checked in _check_args
        return chain_method
    return fast_nuts.default_chain_method(num_chains, device)


def _run_fast(name, model, args, kwargs, *, num_samples, warmup_steps, num_chains, init_fn,
              target_accept_prob, max_tree_depth, dense_mass, seed, progress_bar, chain_method, jit,
              precondition=None):
    try:
        from . import fast_nuts
    except ImportError as err:
        raise RuntimeError(f"{name}: backend='fast' needs bayessky.infer.fast_nuts, which is not "
                           "available in this installation; use backend='pyro'") from err
    pot = FlatPotential(model, args, kwargs, num_chains=num_chains, init_strategy=init_fn, name=name)
    method = _fast_chain_method(name, chain_method, num_chains, pot.initial.device)
    # traced lazily, in each worker process for its own block of chains (a trace fixes the shape)
    potential = TracedPotential(pot, name) if jit else pot
    initial = pot.initial.detach()
    # "laplace": the Hessian at the chains' (common) start, the MAP under init_strategy="map"
    pre = _precondition.resolve(precondition, model, args, kwargs, names=pot.names, shapes=pot.u_shapes,
                                potential=pot, start=initial.mean(0), name=name)
    if pre is not None:
        # a linear change of variables x = x0 + T z: NUTS runs in z (its adapted mass on top),
        # draws go back through T, so the target is unchanged
        potential = _precondition.precondition(potential, pre)
        initial = pre.inverse(initial)
    out = fast_nuts.sample(potential, initial, num_samples, warmup_steps,
                           target_accept=target_accept_prob, max_tree_depth=max_tree_depth,
                           dense_mass=bool(dense_mass), seed=seed, progress_bar=progress_bar,
                           chain_method=method)
    z = out["samples"].detach()
    if pre is not None:
        z = pre.forward(z)
        # U_z = U - log|det T|: report the model's own potential (lp = -U), as without it
        for key in ("potential_energy", "energy"):
            if out.get(key) is not None:
                out[key] = torch.as_tensor(out[key]) + pre.log_abs_det
    samples = pot.constrain(z)
    C, S = z.shape[0], z.shape[1]

    def stat(key):
        v = out.get(key)
        if v is None:
            return None
        v = torch.as_tensor(v).detach().cpu()
        return v.reshape(C, 1).expand(C, S) if v.numel() == C else v.reshape(C, S)

    stats = {"diverging": stat("diverging").bool(), "energy": stat("energy"),
             "lp": -stat("potential_energy") if out.get("potential_energy") is not None else None,
             "acceptance_rate": stat("accept_prob"), "step_size": stat("step_size"),
             "n_steps": stat("num_steps"), "tree_depth": stat("tree_depth")}
    return samples, {k: v.numpy() for k, v in stats.items() if v is not None}


def _check_args(kind, *, num_samples, warmup_steps, num_chains, target_accept_prob, seed,
                max_tree_depth=None, backend="pyro", chain_method=None, precondition=None) -> dict:
    """The checks of every argument ``nuts`` and ``hmc`` read before touching the model."""
    num_samples, warmup_steps, num_chains, seed = _check_common(
        kind, num_samples, warmup_steps, num_chains, target_accept_prob, seed)
    if kind == "nuts":  # both backends; Pyro's NUTS divides by zero at depth 0
        max_tree_depth = check_int(kind, "max_tree_depth", max_tree_depth)
    if backend not in ("pyro", "fast"):
        raise ValueError(f"{kind}: backend must be 'pyro' or 'fast', got {backend!r}")
    if backend == "fast" and kind != "nuts":
        raise ValueError(f"{kind}: backend='fast' is only available for nuts")
    if backend == "pyro" and chain_method is not None:
        raise ValueError(f"{kind}: chain_method is an option of backend='fast'; Pyro's MCMC "
                         "chooses its processes itself (num_chains, mp_context)")
    if chain_method not in (None, "vectorized", "parallel"):
        raise ValueError(f"{kind}: chain_method must be 'vectorized', 'parallel' or None, "
                         f"got {chain_method!r}")
    if backend == "pyro" and precondition is not None:
        raise ValueError(f"{kind}: precondition needs backend='fast' (Pyro's kernels sample the "
                         "model's own coordinates)")
    return dict(num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains, seed=seed,
                max_tree_depth=max_tree_depth)


def _check_nuts_args(*, num_samples, warmup_steps, num_chains, target_accept_prob, seed, max_tree_depth,
                     backend, chain_method, precondition) -> dict:
    return _check_args("nuts", num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                       target_accept_prob=target_accept_prob, seed=seed, max_tree_depth=max_tree_depth,
                       backend=backend, chain_method=chain_method, precondition=precondition)


def _check_hmc_kw(step_size, num_steps, trajectory_length) -> dict:
    """hmc's trajectory arguments. Pyro takes num_steps = trajectory_length / step_size: a
    step_size <= 0 never ends a trajectory (hangs) and NaN fails deep inside; the initial step
    size is also the adaptation's start."""
    return {"step_size": check_positive("hmc", "step_size", step_size),
            "num_steps": None if num_steps is None else check_int("hmc", "num_steps", num_steps),
            "trajectory_length": check_positive("hmc", "trajectory_length", trajectory_length, optional=True)}


def _check_hmc_args(*, step_size, num_steps, trajectory_length, num_samples, warmup_steps, num_chains,
                    target_accept_prob, seed) -> dict:
    """All of hmc's checks, in the engine's order (its trajectory arguments first, then _mcmc's)."""
    hmc_kw = _check_hmc_kw(step_size, num_steps, trajectory_length)
    common = _check_args("hmc", num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                         target_accept_prob=target_accept_prob, seed=seed)
    return {**common, "hmc_kw": hmc_kw}


def _mcmc(kind, model, args, *, num_samples, warmup_steps, num_chains, target_accept_prob,
          dense_mass, init_strategy, jit, max_tree_depth, progress_bar, seed, backend, mp_context,
          hmc_kw, model_kwargs, chain_method=None, precondition=None):
    checked = _check_args(kind, num_samples=num_samples, warmup_steps=warmup_steps,
                          num_chains=num_chains, target_accept_prob=target_accept_prob, seed=seed,
                          max_tree_depth=max_tree_depth, backend=backend, chain_method=chain_method,
                          precondition=precondition)
    num_samples, warmup_steps, num_chains, seed, max_tree_depth = (
        checked[k] for k in ("num_samples", "warmup_steps", "num_chains", "seed", "max_tree_depth"))
    with seeded(seed):
        init_fn = resolve_init(kind, init_strategy, model, args, model_kwargs, seed=seed)
        with explain_data_errors(kind, model, args):
            samples, stats = _sample(kind, model, args, model_kwargs, num_samples=num_samples,
                                     warmup_steps=warmup_steps, num_chains=num_chains, init_fn=init_fn,
                                     target_accept_prob=target_accept_prob, dense_mass=dense_mass,
                                     jit=jit, max_tree_depth=max_tree_depth,
                                     progress_bar=progress_bar, seed=seed, backend=backend,
                                     mp_context=mp_context, hmc_kw=hmc_kw, chain_method=chain_method,
                                     precondition=precondition)
        _warn_divergences(kind, stats["diverging"])
        evaluator = BatchEvaluator(model, args, model_kwargs, name=kind)
        attrs = {"inference_library": "pyro" if backend == "pyro" else "bayessky.fast_nuts",
                 "engine": kind, "num_warmup": warmup_steps, "seed": -1 if seed is None else seed}
        return build_inference_data(evaluator, samples, stats, attrs)


def _sample(kind, model, args, model_kwargs, *, num_samples, warmup_steps, num_chains, init_fn,
            target_accept_prob, dense_mass, jit, max_tree_depth, progress_bar, seed, backend,
            mp_context, hmc_kw, chain_method, precondition=None):
    """Run the chosen backend; returns (samples by chain, per-draw stats)."""
    if backend == "fast":
        samples, stats = _run_fast(
            kind, model, args, model_kwargs, num_samples=num_samples, warmup_steps=warmup_steps,
            num_chains=num_chains, init_fn=init_fn, target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth, dense_mass=dense_mass, seed=seed,
            progress_bar=progress_bar, chain_method=chain_method, jit=jit, precondition=precondition)
    else:
        kernel_kw = dict(full_mass=dense_mass, jit_compile=jit, ignore_jit_warnings=True,
                         target_accept_prob=target_accept_prob, **hmc_kw)
        if kind == "nuts":
            kernel_kw["max_tree_depth"] = max_tree_depth
        samples, stats = _run_pyro(
            kind, model, args, model_kwargs, num_samples=num_samples, warmup_steps=warmup_steps,
            num_chains=num_chains, init_fn=init_fn, progress_bar=progress_bar,
            mp_context=mp_context, kernel_kw=kernel_kw)
    return samples, stats


def nuts(
    model: Callable,
    *args,
    num_samples: int = 1000,
    warmup_steps: int = 500,
    num_chains: int = 1,
    target_accept_prob: float = 0.8,
    dense_mass: bool = False,
    init_strategy="median",
    jit: bool = False,
    max_tree_depth: int = 10,
    progress_bar: bool = True,
    seed: int | None = 0,
    backend: str = "pyro",
    mp_context: str | None = None,
    chain_method: str | None = None,
    precondition=None,
    **model_kwargs,
):
    r"""No-U-Turn sampler (Pyro's ``NUTS`` in ``MCMC``) -> ``arviz.InferenceData``.

    Arguments:
        model: a Pyro model; ``*args`` and ``**model_kwargs`` are passed to it.
        num_samples, warmup_steps: kept draws and adaptation iterations per chain.
        num_chains: chains; run in parallel processes when the machine has a spare core per chain
            (Pyro's rule: ``num_chains <= cpu_count - 1``; ``mp_context="spawn"`` for CUDA),
            otherwise one after another.
        target_accept_prob: dual-averaging target of the step-size adaptation.
        dense_mass: adapt a dense (True) or diagonal (False) mass matrix.
        init_strategy: ``"median"``, ``"uniform"``, ``"mean"``, ``"sample"``, ``"map"`` (start at
            the MAP found by :func:`bayessky.infer.map`), a dict of site values, or a Pyro
            init function.
        jit: trace the potential energy with the PyTorch JIT (Pyro's ``jit_compile``; with
            ``backend="fast"`` a :class:`~bayessky.infer._model.TracedPotential`, checked against
            the model and dropped with a warning if they disagree). Worth it for map-sized models
            whose gradient is cheap next to Pyro's per-call bookkeeping (64 x 64 Wiener
            model: 1.7x per gradient call, 1.2x per NUTS run); the model must not branch on
            values nor draw random numbers.
        max_tree_depth: at most 2^max_tree_depth leapfrog steps per draw.
        seed: seeds torch/numpy/random for this call (global states are restored afterwards).
        backend: ``"pyro"`` or ``"fast"`` (batched chains, :mod:`bayessky.infer.fast_nuts`).
        chain_method: ``backend="fast"`` only: ``"vectorized"`` (all chains in one batch in
            this process), ``"parallel"`` (the batch split across forked CPU processes, one per
            usable core) or ``None``: parallel on a multi-core CPU, vectorized on GPUs. A chain's
            draws do not depend on it.
        precondition: ``backend="fast"`` only: sample ``z`` with ``x = x0 + T z`` (``x`` the
            flat unconstrained vector), an exact change of variables
            (:mod:`bayessky.infer.precondition`): ``"fourier"`` (``T = F^-1 sqrt(W) F`` on every
            site with a :class:`~bayessky.distributions.GaussianRandomField` prior,
            ``W = S / (1 + S q)`` with ``q`` the mean precision of a white ``MapNormal``
            observing it), ``"diagonal"`` (per-pixel ``(mean(1/S) + 1[M>0]/sigma^2)^-1/2``), ``"laplace"``
            (``T`` the Cholesky factor of the inverse Hessian at the chains' start, which must be
            a mode: ``init_strategy="map"``; at most 256 coordinates), a
            :class:`~bayessky.infer.precondition.Preconditioner`, or None. The adapted mass
            matrix then lives in ``z``.

    Returns:
        InferenceData with ``posterior`` (latent and deterministic sites, (chain, draw, ...)),
        ``sample_stats`` (lp, energy, diverging, acceptance_rate, step_size, n_steps),
        ``log_likelihood`` (observed sites and ``pyro.factor`` terms) and ``observed_data``.
        Divergences after warmup raise a warning with their count.

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(data):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     pyro.sample("obs", dist.Normal(mu, 1.0).expand([3]).to_event(1), obs=data)
        >>> idata = nuts(model, torch.tensor([0.1, 0.3, -0.2]), num_samples=50, warmup_steps=50,
        ...              progress_bar=False)
        >>> idata.posterior["mu"].shape
        (1, 50)
    """
    return _mcmc("nuts", model, args, num_samples=num_samples, warmup_steps=warmup_steps,
                 num_chains=num_chains, target_accept_prob=target_accept_prob, dense_mass=dense_mass,
                 init_strategy=init_strategy, jit=jit, max_tree_depth=max_tree_depth,
                 progress_bar=progress_bar, seed=seed, backend=backend, mp_context=mp_context,
                 hmc_kw={}, model_kwargs=model_kwargs, chain_method=chain_method,
                 precondition=precondition)


def hmc(
    model: Callable,
    *args,
    num_samples: int = 1000,
    warmup_steps: int = 500,
    num_chains: int = 1,
    step_size: float = 1.0,
    num_steps: int | None = None,
    trajectory_length: float | None = None,
    target_accept_prob: float = 0.8,
    dense_mass: bool = False,
    init_strategy="median",
    jit: bool = False,
    progress_bar: bool = True,
    seed: int | None = 0,
    mp_context: str | None = None,
    **model_kwargs,
):
    r"""Static-trajectory Hamiltonian Monte Carlo (Pyro's ``HMC``) -> ``arviz.InferenceData``.

    As :func:`nuts`, with a fixed trajectory: ``num_steps`` leapfrog steps, or
    ``trajectory_length`` (default 2 pi, Stan's) divided by the adapted step size.
    """
    hmc_kw = _check_hmc_kw(step_size, num_steps, trajectory_length)  # the common ones: in _mcmc
    return _mcmc("hmc", model, args, num_samples=num_samples, warmup_steps=warmup_steps,
                 num_chains=num_chains, target_accept_prob=target_accept_prob, dense_mass=dense_mass,
                 init_strategy=init_strategy, jit=jit, max_tree_depth=None, progress_bar=progress_bar,
                 seed=seed, backend="pyro", mp_context=mp_context, hmc_kw=hmc_kw,
                 model_kwargs=model_kwargs)
