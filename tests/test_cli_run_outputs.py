"""``bayessky run`` writes only what the engine knows: a MAP point has no std map and no spread or
MCMC columns in summary.csv; grid draws have sd but no MCMC diagnostics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayessky.cli import main
from bayessky.families import dust_toy, hi_toy


def test_map_run_writes_no_std_map(tmp_path):
    m = np.asarray(dust_toy.sample(1, size=16, seed=3), dtype=np.float64)
    np.save(tmp_path / "d.npy", m)
    out = tmp_path / "map"
    assert main(["run", "dust_inpainting", "--data", str(tmp_path / "d.npy"), "--engine", "map",
                 "--set", "steps=5", "--set", "prior='gaussian'", "--out", str(out)]) == 0
    assert (out / "map_mean.npy").is_file()
    assert not (out / "map_std.npy").exists()


def test_summary_columns_follow_the_engine(tmp_path):
    np.save(tmp_path / "x.npy", hi_toy.sample(1, 0.3, 0.8, size=16, seed=5))
    cols = {}
    for engine, extra in (("map", ["--set", "steps=20"]), ("grid", ["--set", "grid_size=6"])):
        out = tmp_path / engine
        assert main(["run", "hi_parameters", "--data", str(tmp_path / "x.npy"), "--engine", engine,
                     "--set", "likelihood='exact'", "--no-plots", "--out", str(out), *extra]) == 0
        cols[engine] = set(pd.read_csv(out / "summary.csv").columns)
    assert "mean" in cols["map"] and not cols["map"] & {"sd", "ess_bulk", "r_hat", "mcse_mean"}, cols["map"]
    assert "sd" in cols["grid"] and not cols["grid"] & {"ess_bulk", "r_hat", "mcse_mean"}, cols["grid"]


def test_progress_of_a_one_map_grid_run_and_quiet(tmp_path, capsys):
    np.save(tmp_path / "x.npy", hi_toy.sample(1, 0.3, 0.8, size=16, seed=5))
    base = ["run", "hi_parameters", "--data", str(tmp_path / "x.npy"), "--engine", "grid",
            "--set", "likelihood='exact'", "--set", "grid_size=6", "--no-plots"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert "point" in capsys.readouterr().err  # the grid engine's bar over grid points
    assert main([*base, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert "point" not in capsys.readouterr().err
