"""Omega_m and sigma_8 from an HI map with a learned field-level likelihood (HIGlow-style).

    Omega_m ~ U(0.1, 0.5),  sigma_8 ~ U(0.6, 1.0)          (the CAMELS LH box)
    map     ~ p_flow(map | Omega_m, sigma_8 [, extra])      (a conditional Glow, user units)

Run it with any engine, on one map or a stack (one posterior per map):

    bayessky run inference/hi_parameters.py --data maps.npy --engine grid
    bayessky run inference/hi_parameters.py --data maps.npy --engine nuts --set num_samples=500
    bayessky run inference/hi_parameters.py --data maps.npy --set likelihood='"exact"'

Options (``--set key=value``):
    flow:        the learned likelihood: a shipped prior name or a folder (default "hi-cglow-32").
    likelihood:  "flow" (default) or "exact" — the exact hi-toy-v1 likelihood, for maps made by
                 ``bayessky simulate hi-toy``: the reference the learned posterior is judged by.
    extra:       values of further conditioning parameters the prior was trained with
                 (e.g. {"A_SN1": 1.0}); fixed, not inferred. Copy this file and give them priors
                 to infer them too.
    grid_size:   points per axis of the grid engine (default 40; cell centres, so the uniform
                 prior's edges are never evaluated).

Copy and edit this file for your own data: the model is ten lines.
"""

from __future__ import annotations

from functools import lru_cache

import pyro
import pyro.distributions as dist
import torch

import bayessky
from bayessky.families import hi_toy

BOUNDS = {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0)}
DEFAULTS = {"engine": "grid", "num_samples": 1000, "warmup_steps": 300}


@lru_cache(maxsize=4)
def _prior(name: str, device: str):
    return bayessky.load_prior(name, device=device)


def model(data: torch.Tensor, flow: str = "hi-cglow-32", likelihood: str = "flow",
          extra: dict | None = None):
    """data: one linear HI map (N, N), positive. Sites: Omega_m, sigma_8, map (observed)."""
    lo = torch.tensor([BOUNDS["Omega_m"][0], BOUNDS["sigma_8"][0]], dtype=data.dtype, device=data.device)
    hi = torch.tensor([BOUNDS["Omega_m"][1], BOUNDS["sigma_8"][1]], dtype=data.dtype, device=data.device)
    omega_m = pyro.sample("Omega_m", dist.Uniform(lo[0], hi[0]))
    sigma_8 = pyro.sample("sigma_8", dist.Uniform(lo[1], hi[1]))
    if likelihood == "exact":
        pyro.factor("map", hi_toy.log_likelihood(data, omega_m, sigma_8))
        return
    if likelihood != "flow":
        raise ValueError(f"likelihood: expected 'flow' or 'exact', got {likelihood!r}")
    learned = _prior(str(flow), str(data.device))
    context = {"Omega_m": omega_m, "sigma_8": sigma_8}
    for name, value in (extra or {}).items():
        context[name] = torch.as_tensor(value, dtype=data.dtype, device=data.device)
    pyro.sample("map", learned.distribution(context), obs=data.to(learned.dtype))


def grid(grid_size: int = 40):
    """Cell centres of a grid_size^2 grid over the prior box, for the grid engine."""
    axes = {}
    for name, (lo, hi) in BOUNDS.items():
        step = (hi - lo) / grid_size
        axes[name] = torch.linspace(lo + step / 2, hi - step / 2, grid_size, dtype=torch.float64)
    return axes
