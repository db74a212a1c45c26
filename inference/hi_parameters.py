"""Omega_m and sigma_8 from an HI map with a learned field-level likelihood: a script to copy and edit.

    Omega_m ~ U(0.1, 0.5),  sigma_8 ~ U(0.6, 1.0)          (the CAMELS LH box)
    map     ~ p_flow(map | Omega_m, sigma_8 [, extra])      (a conditional Glow, user units)

The same model as the packaged ``bayessky.models.hi_parameters`` (``bayessky run hi_parameters``),
written out so you can change it: e.g. give sigma_8 another prior, or infer an ``extra``
conditioning parameter by sampling it here and passing it in ``extra``. Run it with any engine:

    bayessky run inference/hi_parameters.py --data maps.npy --engine grid
    bayessky run inference/hi_parameters.py --data maps.npy --engine nuts --set num_samples=500
    bayessky run inference/hi_parameters.py --data maps.npy --set likelihood='"exact"'

Options (``--set key=value``): ``flow`` (shipped prior name or folder, default "hi-cglow-32"),
``likelihood`` ("flow" or "exact": the hi-toy-v1 likelihood, for maps made by ``bayessky simulate
hi-toy``), ``extra`` (fixed values of further conditioning parameters, e.g. {"A_SN1": 1.0}) and
``grid_size`` (points per axis of the grid engine, default 40).
"""

from __future__ import annotations

import pyro
import torch

# DEFAULTS (engine settings) and grid (the grid engine's axes) are read by `bayessky run`
from bayessky.models.hi_parameters import DEFAULTS, box_prior, grid, observe

__all__ = ["DEFAULTS", "grid", "model"]


def model(data: torch.Tensor, flow: str = "hi-cglow-32", likelihood: str = "flow",
          extra: dict | None = None) -> None:
    """data: one linear HI map (N, N), positive. Sites: Omega_m, sigma_8, map (observed)."""
    omega_m = pyro.sample("Omega_m", box_prior("Omega_m", data))   # U(0.1, 0.5)
    sigma_8 = pyro.sample("sigma_8", box_prior("sigma_8", data))   # U(0.6, 1.0)
    observe(data, omega_m, sigma_8, flow=flow, likelihood=likelihood, extra=extra)
