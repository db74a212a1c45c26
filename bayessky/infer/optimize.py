"""Maximum a posteriori estimate (Pyro ``AutoDelta``) and its Laplace approximation.

The MAP is the mode of p(x | data) in the coordinates the model samples x in: ``AutoDelta``
places a point mass on each latent site and ``Trace_ELBO`` then equals log p(x, data), with no
change-of-variables term, optimised through unconstrained parameters. L-BFGS (strong-Wolfe line
search) reaches the mode of a smooth posterior to near machine precision in few iterations,
which is what a field-level MAP (a Wiener-filter-like solve of 10^4+ pixels) needs; Adam is
there for rough or very high-dimensional objectives.

With ``laplace=True`` the mode is found by ``AutoLaplaceApproximation`` (in unconstrained space,
where the Gaussian is placed) and the posterior group holds draws from N(mode, H^-1); building
the dense Hessian costs D gradient evaluations and D^2 memory, so keep D to a few thousand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoLaplaceApproximation
from tqdm.auto import tqdm

from ._checks import check_int, check_positive, check_seed, explain_data_errors, model_info
from ._compat import add_group, get_group
from ._idata import build_inference_data
from ._model import BatchEvaluator, ModelInfo, init_strategy_fn, seeded, to_batch

__all__ = ["map", "fit_guide", "guide_draws", "resolve_init", "gradient_snr"]


def resolve_init(name: str, strategy, model: Callable, args, kwargs,
                 info: ModelInfo | None = None, seed: int | None = None) -> Callable:
    """``init_strategy_fn`` with a dict checked against the model's latent sites (names, shapes).

    ``"map"`` starts at the MAP found by :func:`bayessky.infer.map` (200 steps); for the MAP
    engine itself it is its default start (``"median"``), so a script whose defaults ask NUTS to
    start at the MAP also runs with ``--engine map``.
    """
    # every engine resolves its start here, so this is where a model with nothing to infer is
    # refused by name (Pyro's NUTS otherwise ends in a bare StopIteration, emcee in torch.cat)
    with explain_data_errors(name, model, args):
        info = info or model_info(model, args, kwargs)
    if not info.latent:
        raise ValueError(f"{name}: the model has no latent sample sites (every site is observed); "
                         "nothing to infer")
    if isinstance(strategy, str) and strategy == "map":
        if name == "map":
            strategy = "median"
        else:  # this module's map (the MAP engine), not the builtin
            idata = map(model, *args, steps=200, seed=seed, progress_bar=False, **(kwargs or {}))
            post = get_group(idata, "posterior")
            info = info or model_info(model, args, kwargs)
            strategy = {k: torch.as_tensor(post[k].values[0, 0], dtype=info.dtype, device=info.device)
                        for k in info.latent}
    if isinstance(strategy, Mapping) and info is None:
        info = model_info(model, args, kwargs)
    return init_strategy_fn(strategy, f"{name}: init_strategy", info=info)


def fit_guide(model, guide, args, kwargs, *, steps: int, optimizer: str, lr: float | None,
              name: str, progress_bar: bool = False, num_particles: int = 1,
              final_lr: float | None = None, tol: float = 1e-10,
              diagnostics: dict | None = None) -> list[float]:
    """Minimise Pyro's ``Trace_ELBO`` loss of (model, guide); returns the loss trace.

    With ``"adam"``, a ``diagnostics`` dict receives ``grad_snr`` (:func:`gradient_snr`).

    ``optimizer="lbfgs"`` runs torch's L-BFGS (one closure call per loss evaluation) on the
    guide's parameters; ``"adam"`` runs ``ClippedAdam`` steps with optional geometric decay of
    the learning rate from ``lr`` to ``final_lr``.
    """
    elbo = Trace_ELBO(num_particles=num_particles)
    if num_particles > 1:
        # particles in one vectorised model/guide call when the model broadcasts (much cheaper)
        vec = Trace_ELBO(num_particles=num_particles, vectorize_particles=True)
        try:
            with torch.no_grad():
                if torch.isfinite(vec.differentiable_loss(model, guide, *args, **kwargs)):
                    elbo = vec
        except Exception:  # noqa: BLE001 - the model does not broadcast over particles
            pass
    loss_fn = elbo.differentiable_loss
    losses: list[float] = []
    bar = tqdm(total=steps, desc=name, disable=not progress_bar, leave=False)
    if optimizer == "lbfgs":
        # materialise the guide's parameters and collect their unconstrained leaves (Pyro's idiom for
        # custom objectives; works for autoguides and for plain guide functions using pyro.param)
        with poutine.trace(param_only=True) as capture:
            guide(*args, **kwargs)
        params = list({id(t): t for t in (site["value"].unconstrained()
                                          for site in capture.trace.nodes.values())}.values())
        params = [p for p in params if p.requires_grad]
        _lbfgs(params, lambda: loss_fn(model, guide, *args, **kwargs), losses, bar,
               steps=steps, lr=1.0 if lr is None else lr, tol=tol)
    elif optimizer == "adam":
        lr = 0.01 if lr is None else lr
        # ClippedAdam: Adam with per-step lr decay (lrd) and elementwise gradient clipping, the
        # safeguard against the rare exploding ELBO gradient; lrd decays lr geometrically to final_lr
        lrd = (final_lr / lr) ** (1.0 / max(steps, 1)) if final_lr else 1.0
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": lrd, "clip_norm": 10.0})
        engine = SVI(model, guide, optim, loss=elbo)
        for _ in range(steps):
            losses.append(engine.step(*args, **kwargs))
            bar.update(1)
        if diagnostics is not None:
            diagnostics["grad_snr"] = gradient_snr(optim)
    else:
        raise ValueError(f"{name}: optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    bar.close()
    if not math.isfinite(losses[-1]):
        raise RuntimeError(f"{name}: the loss became non-finite ({losses[-1]}); lower lr or check "
                           "the model's support")
    return losses


class _NonFinite(Exception):
    """An L-BFGS trial point with non-finite parameters or loss."""


def _lbfgs(params: list, loss_fn, losses: list, bar, *, steps: int, lr: float, tol: float,
           restarts: int = 4) -> None:
    """torch's L-BFGS (strong Wolfe line search) on ``params``, restarted from the best point
    seen with a 4x smaller ``lr`` when a trial point goes non-finite.

    torch's line search has no guard against a step into a region where the loss overflows (a
    flow's inverse far outside its training range): the interpolation then turns the step, and
    every parameter, into NaN, and the model refuses the NaN values. A trial point whose
    parameters or loss are not finite ends the pass instead; the best finite point so far is
    restored and a new pass starts from there, with the evaluations left.
    """
    best = {"loss": math.inf, "values": None}
    budget = int(steps * 1.25) + 10

    def closure():
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise _NonFinite
        opt.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise _NonFinite
        loss.backward()
        value = loss.item()
        losses.append(value)
        bar.update(1)
        if value < best["loss"]:
            best["loss"], best["values"] = value, [p.detach().clone() for p in params]
        return loss

    for attempt in range(restarts + 1):
        left = budget - len(losses)
        if left <= 0:
            break
        opt = torch.optim.LBFGS(params, lr=lr * 0.25 ** attempt, max_iter=min(steps, left), max_eval=left,
                                tolerance_grad=tol, tolerance_change=tol * 1e-3, history_size=50,
                                line_search_fn="strong_wolfe")
        try:
            opt.step(closure)
            return
        except _NonFinite:
            if best["values"] is None:
                raise RuntimeError("lbfgs: the loss is not finite at the start; check the model's "
                                   "support and init_strategy") from None
            with torch.no_grad():
                for p, v in zip(params, best["values"]):
                    p.copy_(v)


def gradient_snr(optim) -> float:
    """Signal-to-noise of the ELBO gradient at the end of an Adam run, from the optimiser's state.

    For each parameter tensor, the mean over its elements of m^2 / v, Adam's squared running mean
    of the gradient over its running mean square; the largest over tensors (a few slow tensors,
    e.g. the scales, must not be averaged away by thousands of converged covariance entries).
    Why the gradient and not the loss trace: with a decaying learning rate every run ends with a
    flat loss, converged or frozen (measured on the 144-pixel Wiener posterior: the drop of the
    mean loss between the last two tenths is ~0.3 nats, 5-11 standard errors, at 1000-3000 steps,
    and 0.8 standard errors after 50 steps). A zero-mean gradient of pure noise gives
    (1 - beta1) / (1 + beta1) = 0.053 for ClippedAdam's beta1 = 0.9; a gradient still pointing
    somewhere gives ~1 and more (measured: 14-19 after 50 steps, 0.4-0.8 after 300, 0.04-0.13
    after 600-1000). NaN when the state holds no gradient.
    """
    vals = [float((st["exp_avg"] ** 2 / (st["exp_avg_sq"] + 1e-30)).mean())
            for opt in optim.optim_objs.values() for st in opt.state.values() if "exp_avg" in st]
    return max(vals) if vals else float("nan")


def guide_draws(guide, args, kwargs, info, num_samples: int) -> dict[str, torch.Tensor]:
    """Draws of the model's latent sites from a fitted guide, (num_samples, *shape) each.

    Runs only the guide (``pyro.infer.Predictive`` on it, vectorised over draws; draw by draw if
    that fails): deterministic sites and likelihoods are added later in one model pass.
    """
    names = info.latent
    with torch.no_grad():
        for parallel in (True, False):
            try:
                out = Predictive(guide, num_samples=num_samples, return_sites=names,
                                 parallel=parallel)(*args, **kwargs)
                return {k: to_batch(out[k], num_samples, info.sites[k].shape) for k in names}
            except Exception:  # noqa: BLE001 - guide does not vectorise: loop
                if not parallel:
                    raise
    raise AssertionError("unreachable")


def _check_args(*, steps, optimizer, lr, laplace, num_samples, seed) -> dict:
    """map's arguments checked before the model is touched."""
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"map: optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if not isinstance(laplace, bool):
        raise ValueError(f"map: laplace must be True or False, got {laplace!r}")
    return dict(steps=check_int("map", "steps", steps),
                num_samples=check_int("map", "num_samples", num_samples) if laplace else num_samples,
                lr=check_positive("map", "lr", lr, optional=True), seed=check_seed("map", seed))


def map(  # noqa: A001 - the public name of the engine
    model: Callable,
    *args,
    steps: int = 500,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    laplace: bool = False,
    num_samples: int = 1000,
    init_strategy="median",
    progress_bar: bool = False,
    seed: int | None = 0,
    **model_kwargs,
):
    r"""MAP estimate of all latent sites (optionally with a Laplace approximation).

    Arguments:
        model: a Pyro model; ``*args`` and ``**model_kwargs`` are passed to it.
        steps: L-BFGS iterations (at most) or Adam steps.
        optimizer: ``"lbfgs"`` (default) or ``"adam"``; ``lr`` defaults to 1 and 0.01.
        laplace: also fit N(mode, H^-1) in unconstrained space and return ``num_samples`` draws.
        init_strategy: as in :func:`bayessky.infer.nuts` (``"median"``, ``"uniform"``, dict, ...).

    Returns:
        InferenceData: ``posterior`` holds the MAP as one draw of one chain (or the Laplace draws),
        with deterministic sites, ``log_likelihood`` and ``observed_data`` as for the samplers;
        the group ``optimization`` holds the ``loss`` trace (-log p(x, data) per evaluation, dim
        ``step``) and the mode of every latent and deterministic site.

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(data):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     pyro.sample("obs", dist.Normal(mu, 1.0).expand([3]).to_event(1), obs=data)
        >>> idata = map(model, torch.tensor([1.0, 2.0, 3.0]))
        >>> round(float(idata.posterior["mu"].values.item()), 4)   # = sum(data) / (n + 1)
        1.5
    """
    a = _check_args(steps=steps, optimizer=optimizer, lr=lr, laplace=laplace, num_samples=num_samples,
                    seed=seed)
    steps, num_samples, lr, seed = (a[k] for k in ("steps", "num_samples", "lr", "seed"))
    # a private parameter store: guides of earlier fits (other shapes, same names) must not leak in
    with seeded(seed), pyro.get_param_store().scope():
        evaluator = BatchEvaluator(model, args, model_kwargs, name="map")
        init_fn = resolve_init("map", init_strategy, model, args, model_kwargs, info=evaluator.info)
        latent = evaluator.info.latent
        if not latent:
            raise ValueError("map: the model has no latent sample sites to optimise")
        guide = (AutoLaplaceApproximation if laplace else AutoDelta)(model, init_loc_fn=init_fn)
        with explain_data_errors("map", model, args):
            losses = fit_guide(model, guide, args, model_kwargs, steps=steps, optimizer=optimizer,
                               lr=lr, name="map", progress_bar=progress_bar)
        lap = guide.laplace_approximation(*args, **model_kwargs) if laplace else None
        with torch.no_grad():
            med = (lap if laplace else guide).median(*args, **model_kwargs)
            mode = {k: v.detach() for k, v in med.items() if k in latent}
            point = evaluator({k: v.unsqueeze(0) for k, v in mode.items()})
        if laplace:
            draws = guide_draws(lap, args, model_kwargs, evaluator.info, num_samples)
            samples = {k: v.unsqueeze(0) for k, v in draws.items()}
        else:
            samples = {k: v.reshape(1, 1, *v.shape) for k, v in mode.items()}
        lp = float(point.total(evaluator.info.sites)[0])
        stats = {"lp": [[lp] * next(iter(samples.values())).shape[1]]} if not laplace else {}
        idata = build_inference_data(
            evaluator, samples, stats,
            {"inference_library": "pyro", "engine": "map", "optimizer": optimizer,
             "laplace": int(laplace), "seed": -1 if seed is None else seed})
        opt_group = {"loss": torch.tensor(losses, dtype=torch.float64)}
        opt_group.update({k: v[0] for k, v in point.values.items()})
        dims = {"loss": ["step"]}
        return add_group(idata, "optimization", opt_group, dims)
