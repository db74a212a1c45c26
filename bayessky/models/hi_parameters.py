r"""Omega_m and sigma_8 from an HI map with a learned field-level likelihood (HIGlow-style).

.. math::
    \Omega_m \sim \mathcal{U}(0.1, 0.5), \qquad \sigma_8 \sim \mathcal{U}(0.6, 1.0)
    \qquad \text{(the CAMELS LH box)}

    x \mid \Omega_m, \sigma_8 \sim p_\phi(x \mid \Omega_m, \sigma_8 [, \eta])
    \qquad \text{(a conditional Glow, ``likelihood="flow"``)}

where :math:`x` is one linear HI map (N, N) in the units the prior was trained on (positive),
:math:`p_\phi` a trained conditional prior (default the shipped ``hi-cglow-32``, 32 x 32 maps)
and :math:`\eta` optional further conditioning values held fixed (``extra``). With
``likelihood="exact"`` the flow is replaced by the exact hi-toy-v1 likelihood of
:mod:`bayessky.families.hi_toy` (a Gaussian field :math:`g = \log_{10} x - 8` with spectrum
:math:`S_\theta(k)`),

.. math::
    \log p(x \mid \theta) = -\frac{1}{2} \sum_k \frac{|\tilde g_k|^2}{N^2 S_\theta(k)}
                            - \frac{1}{2} \sum_k \log 2\pi S_\theta(k),

the reference a learned posterior is judged by, for maps made by ``bayessky simulate hi-toy``.

Sites: ``Omega_m``, ``sigma_8`` (scalar latents) and ``map`` (observed; a ``pyro.factor`` for the
exact likelihood). Options (``bayessky run hi_parameters --set key=value``):

- ``flow``: the learned likelihood, a shipped prior name or a folder (default ``"hi-cglow-32"``);
- ``likelihood``: ``"flow"`` (default) or ``"exact"``;
- ``extra``: ``{name: value}`` of further conditioning parameters the prior was trained with
  (e.g. ``{"A_SN1": 1.0}``), fixed, not inferred;
- ``grid_size``: points per axis of the grid engine (default 40; cell centres, so the uniform
  prior's edges are never evaluated).

The building blocks (:data:`BOUNDS`, :func:`box_prior`, :func:`observe`, :func:`grid`) are what
the editable script ``inference/hi_parameters.py`` is made of: copy it to change a prior or infer
an ``extra`` parameter.

Example:
    >>> import torch
    >>> from bayessky import infer
    >>> from bayessky.families import hi_toy
    >>> from bayessky.models import hi_parameters
    >>> x = torch.as_tensor(hi_toy.sample(1, 0.3, 0.8, size=32, seed=7)[0])
    >>> post = infer.grid(hi_parameters.model, x, grid=hi_parameters.grid(20), likelihood="exact")
    >>> sorted(post.mean)
    ['Omega_m', 'sigma_8']
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import pyro
import pyro.distributions as dist
import torch

from ..families import hi_toy
from ..priors import load_prior

__all__ = ["BOUNDS", "DEFAULTS", "model", "box_prior", "observe", "learned_likelihood", "grid"]

#: the uniform prior box of (Omega_m, sigma_8), the CAMELS LH ranges
BOUNDS: dict[str, tuple[float, float]] = {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0)}
#: engine settings ``bayessky run`` starts from. The grid is the default engine; NUTS
#: (``--engine nuts``) is set up for a 2-parameter posterior whose every gradient is a flow pass:
#: bayessky's batched NUTS (``backend="fast"``: 4 chains in 2 forked single-thread processes, a
#: batch of 2 chains costs about 1.5 gradients of one, where Pyro runs chains one at a time), a
#: dense 2 x 2 mass matrix (Omega_m and sigma_8 are degenerate), a start at the MAP (a few L-BFGS
#: steps in 2 dimensions) so warm-up adapts instead of travelling, and 200 + 1000 iterations per
#: chain (200 + 250 gave a bulk ESS of only ~190 per parameter on a map at the prior's edge).
#: ``num_samples`` also sets the grid engine's draws.
DEFAULTS: dict[str, object] = {"engine": "grid", "num_samples": 1000, "warmup_steps": 200, "num_chains": 4,
                               "backend": "fast", "dense_mass": True, "init_strategy": "map"}


@lru_cache(maxsize=4)
def learned_likelihood(name: str, device: str):
    """The trained conditional prior ``name`` (shipped name or folder) on ``device``, loaded once."""
    return load_prior(name, device=device)


def box_prior(name: str, like: torch.Tensor) -> dist.Uniform:
    """``U(lo, hi)`` of parameter ``name`` of :data:`BOUNDS`, in the dtype and on the device of ``like``."""
    lo, hi = torch.tensor(BOUNDS[name], dtype=like.dtype, device=like.device)
    return dist.Uniform(lo, hi)


def observe(data: torch.Tensor, omega_m: torch.Tensor, sigma_8: torch.Tensor, *,
            flow: str = "hi-cglow-32", likelihood: str = "flow",
            extra: Mapping[str, float] | None = None) -> None:
    """The likelihood site ``map``: ``data`` (N, N) scored given ``omega_m`` and ``sigma_8``.

    Arguments:
        data: one positive linear map (N, N).
        omega_m, sigma_8: parameter values (scalars, or batched by the engines).
        flow: learned likelihood (prior name or folder), used when ``likelihood="flow"``.
        likelihood: ``"flow"`` or ``"exact"`` (hi-toy-v1, :func:`bayessky.families.hi_toy.log_likelihood`).
        extra: further conditioning values of the learned likelihood, fixed.
    """
    if likelihood == "exact":
        pyro.factor("map", hi_toy.log_likelihood(data, omega_m, sigma_8))
        return
    if likelihood != "flow":
        raise ValueError(f"likelihood: expected 'flow' or 'exact', got {likelihood!r}")
    learned = learned_likelihood(str(flow), str(data.device))
    context = {"Omega_m": omega_m, "sigma_8": sigma_8}
    for name, value in (extra or {}).items():
        context[name] = torch.as_tensor(value, dtype=data.dtype, device=data.device)
    pyro.sample("map", learned.distribution(context), obs=data.to(learned.dtype))


def model(data: torch.Tensor, flow: str = "hi-cglow-32", likelihood: str = "flow",
          extra: Mapping[str, float] | None = None) -> None:
    """Pyro model of one linear HI map ``data`` (N, N), positive. Sites: Omega_m, sigma_8, map (observed)."""
    omega_m = pyro.sample("Omega_m", box_prior("Omega_m", data))
    sigma_8 = pyro.sample("sigma_8", box_prior("sigma_8", data))
    observe(data, omega_m, sigma_8, flow=flow, likelihood=likelihood, extra=extra)


def grid(grid_size: int = 40) -> dict[str, torch.Tensor]:
    """Cell centres of a ``grid_size`` x ``grid_size`` grid over :data:`BOUNDS` (float64), for the grid
    engine."""
    from .._validate import as_count, check_memory

    grid_size = as_count(grid_size, "grid_size")
    if grid_size < 1:
        raise ValueError(f"grid_size: expected an integer >= 1, got {grid_size}")
    # the grid engine holds a log density per point and map: refuse a grid that cannot fit
    check_memory(8 * 4 * grid_size ** len(BOUNDS), "grid_size")
    axes = {}
    for name, (lo, hi) in BOUNDS.items():
        step = (hi - lo) / grid_size
        axes[name] = torch.linspace(lo + step / 2, hi - step / 2, grid_size, dtype=torch.float64)
    return axes
