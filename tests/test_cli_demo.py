"""``bayessky demo`` end to end at a coarse grid, checked against an independent numpy grid.

The demo's exact-likelihood posterior is recomputed here from the map it wrote (``map.npy``) with
``hi_toy.log_likelihood`` on the same cell-centred grid and a flat prior, with plain numpy
normalisation; its learned posterior (the shipped ``models/hi-cglow-32``) must then lie near the
exact one. On this map the full-resolution demo measures learned - exact = +1.45 / -1.21 exact sd
(an outlier among the 100 benchmark maps, see README), so the bound is 2.5 exact sd.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bayessky.cli import main
from bayessky.families import hi_toy

GRID = 10


def _exact_moments(data: np.ndarray) -> dict[str, tuple[float, float]]:
    centres = {}
    for name, (lo, hi) in hi_toy.prior_bounds.items():
        step = (hi - lo) / GRID
        centres[name] = np.linspace(lo + step / 2, hi - step / 2, GRID)
    om, s8 = np.meshgrid(centres["Omega_m"], centres["sigma_8"], indexing="ij")
    m = torch.as_tensor(np.repeat(data[None], om.size, 0), dtype=torch.float64)
    ll = hi_toy.log_likelihood(m, torch.as_tensor(om.ravel()), torch.as_tensor(s8.ravel()),
                               paired=True).numpy()
    w = np.exp(ll - ll.max())
    w /= w.sum()
    out = {}
    for name, v in (("Omega_m", om.ravel()), ("sigma_8", s8.ravel())):
        mean = float((w * v).sum())
        out[name] = (mean, float(np.sqrt((w * (v - mean) ** 2).sum())))
    return out


def test_demo_writes_outputs_and_its_exact_posterior_matches_numpy(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--grid-size", str(GRID), "--nuts-samples", "0"]) == 0
    for name in ("posterior.nc", "posterior_exact.nc", "summary.csv", "corner.png", "map.npy"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "summary.csv").set_index(["engine", "parameter"])
    exact = _exact_moments(np.load(out / "map.npy").astype(np.float64))
    for name, (mean, sd) in exact.items():
        row = table.loc[("grid (exact)", name)]
        assert abs(row["mean"] - mean) < 1e-6 and abs(row["sd"] - sd) < 1e-6, (name, row, mean, sd)
        learned = table.loc[("grid (learned)", name)]
        assert abs(learned["mean"] - mean) < 2.5 * sd, (name, learned["mean"], mean, sd)
