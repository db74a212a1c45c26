"""``bayessky demo`` end to end at a coarse grid, checked against an independent numpy grid.

The demo's exact-likelihood posterior is recomputed here from the map it wrote (``map.npy``) with
a plain-numpy hi-toy-v1 likelihood (``tests/_hi_reference.py``, written from the specification in
``bayessky.families.hi_toy``) on the same cell-centred grid and a flat prior; its learned
posterior (the shipped prior ``hi-cglow-32``) must then lie near the exact one. On this map the
full-resolution demo measures learned - exact = +1.60 / -1.28 exact sd (an outlier among the 100
benchmark maps, see README), so the bound is 2.5 exact sd. The demo runs the packaged model
``bayessky.models.hi_parameters``, so it works from an installed (non-editable) package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _hi_reference import grid_moments

from bayessky.cli import main

GRID = 10


def test_demo_writes_outputs_and_its_exact_posterior_matches_numpy(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--grid-size", str(GRID), "--nuts-samples", "0"]) == 0
    for name in ("posterior.nc", "posterior_exact.nc", "summary.csv", "corner.png", "map.npy"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "summary.csv").set_index(["engine", "parameter"])
    exact = grid_moments(np.load(out / "map.npy").astype(np.float64), GRID)
    for name, (mean, sd) in exact.items():
        row = table.loc[("grid (exact)", name)]
        assert abs(row["mean"] - mean) < 1e-6 and abs(row["sd"] - sd) < 1e-6, (name, row, mean, sd)
        learned = table.loc[("grid (learned)", name)]
        assert abs(learned["mean"] - mean) < 2.5 * sd, (name, learned["mean"], mean, sd)
