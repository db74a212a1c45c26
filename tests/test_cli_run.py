"""``bayessky run MODEL --data FILE``: outputs against closed forms, stacks, channels, errors.

The model scripts are conjugate Gaussian models, so what the runner writes can be checked against
exact answers instead of against another run:

* per-pixel denoising ``x ~ N(0, s^2)``, ``d = M x + n``: the MAP map is the per-pixel Wiener
  filter ``s^2 / (s^2 + sigma^2) d`` on observed pixels and 0 on masked ones;
* a mean parameter ``mu ~ N(0, 1)`` with ``d_i ~ N(mu, 1)``: the grid posterior mean is
  ``sum(d) / (n + 1)``;
* the packaged model ``hi_parameters`` run by name: the same draws as its editable script
  ``inference/hi_parameters.py``, and with the exact likelihood the grid posterior of an
  independent numpy hi-toy-v1 likelihood (``tests/_hi_reference.py``).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import pytest
import torch
from _hi_reference import grid_moments

from bayessky import infer
from bayessky.cli import main

S2, SIGMA2 = 4.0, 1.0

DENOISE = f"""
import pyro, pyro.distributions as dist, torch
DEFAULTS = {{"engine": "map", "steps": 200}}
MAP_SITE = "x"

def model(data, mask=None):
    x = pyro.sample("x", dist.Normal(torch.zeros_like(data), {S2 ** 0.5}).to_event(data.dim()))
    m = torch.ones_like(data) if mask is None else mask
    pyro.sample("obs", dist.Normal(x, {SIGMA2 ** 0.5}).mask(m > 0.5).to_event(data.dim()), obs=data)
"""

MEAN = """
import pyro, pyro.distributions as dist, torch
DEFAULTS = {"engine": "grid", "num_samples": 400}

def grid(n=81):
    return {"mu": torch.linspace(-3, 5, n, dtype=torch.float64)}

def model(data, scale=1.0):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("obs", dist.Normal(mu, scale).expand(data.shape).to_event(data.dim()), obs=data)
"""

CHANNELS = MEAN.replace('DEFAULTS = {"engine": "grid", "num_samples": 400}',
                        'DEFAULTS = {"engine": "grid", "num_samples": 400}\nMAP_SHAPE = (2, 4, 4)')


def _script(tmp_path, text, name="model.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _save(tmp_path, name, arr):
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


def test_map_engine_writes_the_wiener_filter_map(tmp_path):
    rng = np.random.default_rng(0)
    d = rng.normal(size=(6, 6)) * 2
    mask = (rng.random((6, 6)) > 0.3).astype(float)
    out = tmp_path / "out"
    rc = main(["run", _script(tmp_path, DENOISE), "--data", _save(tmp_path, "d.npy", d),
               "--mask", _save(tmp_path, "m.npy", mask), "--out", str(out)])
    assert rc == 0
    mean = np.load(out / "map_mean.npy")
    # float32 maps and L-BFGS tolerances: 1e-3 (a wrong shrinkage factor would be off by ~0.1)
    np.testing.assert_allclose(mean, S2 / (S2 + SIGMA2) * d * mask, atol=1e-3)
    assert (out / "posterior.nc").is_file() and (out / "maps.png").is_file()
    assert json.loads((out / "run.json").read_text())["engine"] == "map"


def test_grid_engine_on_a_stack_gives_one_exact_posterior_per_map(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.normal(1.0, 1.0, size=(3, 4, 4))
    out = tmp_path / "out"
    assert main(["run", _script(tmp_path, MEAN), "--data", _save(tmp_path, "d.npy", stack),
                 "--set", "n=801", "--out", str(out)]) == 0
    table = pd.read_csv(out / "summary.csv", index_col=0)
    assert list(table["map"]) == [0, 1, 2]
    exact_mean = stack.reshape(3, -1).sum(1) / (16 + 1)
    exact_sd = (1 / 17) ** 0.5
    # summary means come from 400 weighted draws of the grid: Monte Carlo error sd / 20
    np.testing.assert_allclose(table["mean"].to_numpy(), exact_mean, atol=4 * exact_sd / 20)
    for i in range(3):
        assert (out / f"posterior_{i:03d}.nc").is_file() and (out / f"corner_{i:03d}.png").is_file()


def test_map_shape_makes_a_channel_cube_one_observation(tmp_path):
    rng = np.random.default_rng(2)
    cube = rng.normal(0.5, 1.0, size=(2, 4, 4))
    script = _script(tmp_path, CHANNELS)
    out = tmp_path / "one"
    assert main(["run", script, "--data", _save(tmp_path, "c.npy", cube), "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["n_maps"] == 1
    table = pd.read_csv(out / "summary.csv", index_col=0)
    np.testing.assert_allclose(table["mean"].iloc[0], cube.sum() / 33, atol=4 * (1 / 33) ** 0.5 / 20)
    out = tmp_path / "many"
    assert main(["run", script, "--data", _save(tmp_path, "s.npy", np.stack([cube] * 3)),
                 "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["n_maps"] == 3


def test_init_strategy_reaches_the_map_engine(tmp_path):
    # L-BFGS with a single step from a given start moves away from it, but only one step: started at
    # the answer it stays there; from the default median (0) it does not reach the answer
    d = np.full((2, 2), 3.0)
    script = _script(tmp_path, DENOISE)
    exact = S2 / (S2 + SIGMA2) * 3.0
    out = tmp_path / "at"
    assert main(["run", script, "--data", _save(tmp_path, "d.npy", d), "--engine", "map",
                 "--set", "steps=1", "--set", "optimizer='adam'",
                 "--set", f"init_strategy={{'x': [[{exact}, {exact}], [{exact}, {exact}]]}}",
                 "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out / "map_mean.npy"), exact, atol=0.02)
    out = tmp_path / "median"
    assert main(["run", script, "--data", _save(tmp_path, "d.npy", d), "--engine", "map",
                 "--set", "steps=1", "--set", "optimizer='adam'", "--out", str(out)]) == 0
    assert np.abs(np.load(out / "map_mean.npy") - exact).min() > 1.0


def test_map_init_values_do_not_mutate_the_callers_tensor():
    def model(data):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu, 1.0).expand([3]).to_event(1), obs=data)

    start = torch.tensor(0.25)
    idata = infer.map(model, torch.tensor([1.0, 2.0, 3.0]), init_strategy={"mu": start})
    assert float(idata.posterior["mu"].values.item()) == pytest.approx(1.5, abs=1e-4)
    assert float(start) == 0.25


def _err(capsys, argv):
    rc = main(argv)
    msg = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(msg) == 1, msg
    return msg[0]


def test_one_line_errors(tmp_path, capsys):
    script = _script(tmp_path, DENOISE)
    good = _save(tmp_path, "d.npy", np.zeros((4, 4)))
    nomodel = _script(tmp_path, "x = 1\n", "nomodel.py")
    assert "does not define" in _err(capsys, ["run", nomodel, "--data", good])
    broken = _script(tmp_path, "import not_a_module_xyz\n", "broken.py")
    assert "failed to import" in _err(capsys, ["run", broken, "--data", good])
    assert "cannot read" in _err(capsys, ["run", script, "--data", str(tmp_path / "none.npy")])
    nan = np.zeros((4, 4))
    nan[1, 2] = np.nan
    assert "NaN" in _err(capsys, ["run", script, "--data", _save(tmp_path, "nan.npy", nan)])
    assert "shape" in _err(capsys, ["run", script, "--data", _save(tmp_path, "v.npy", np.zeros(5))])
    assert "--mask" in _err(capsys, ["run", script, "--data", good,
                                     "--mask", _save(tmp_path, "m.npy", np.ones((3, 3)))])
    assert "--mask" in _err(capsys, ["run", script, "--data", good,
                                     "--mask", _save(tmp_path, "m2.npy", np.full((4, 4), 2.0))])
    assert "no option" in _err(capsys, ["run", script, "--data", good, "--set", "colour=3"])
    chans = _script(tmp_path, CHANNELS, "chans.py")
    assert "expected one map (2, 4, 4)" in _err(capsys, ["run", chans, "--data", good])
    wrong = _save(tmp_path, "w.npy", np.zeros((3, 4, 4)))
    assert "expects maps of shape (2, 4, 4)" in _err(capsys, ["run", chans, "--data", wrong])


def test_set_options_of_another_engine_are_refused(tmp_path, capsys):
    script = _script(tmp_path, DENOISE)
    good = _save(tmp_path, "d.npy", np.zeros((4, 4)))
    out = str(tmp_path / "o")
    msg = _err(capsys, ["run", script, "--data", good, "--engine", "svi", "--set", "walkers=7",
                        "--set", "warmup_steps=100", "--out", out])
    assert msg.startswith("bayessky run: error: --set walkers:") and "'emcee'" in msg and "'svi'" in msg, msg
    msg = _err(capsys, ["run", script, "--data", good, "--engine", "nuts", "--set", "steps=3", "--out", out])
    assert "--set steps:" in msg and "not of 'nuts'" in msg, msg
    assert not (tmp_path / "o" / "run.json").exists()
    # the script's DEFAULTS (steps, for the map engine) may still name other engines' settings
    assert main(["run", script, "--data", good, "--engine", "svi", "--set", "num_samples=4",
                 "--out", out]) == 0
    meta = json.loads((tmp_path / "o" / "run.json").read_text())
    assert meta["engine_options"] == {"steps": 200, "num_samples": 4}


@pytest.mark.parametrize("engine, option, says", [
    ("grid", "map_batch=0", "grid: map_batch must be a positive integer, got 0"),
    ("nuts", "num_chains=0", "nuts: num_chains must be a positive integer, got 0"),
    ("nuts", 'init_strategy="mapp"', "nuts: init_strategy: expected one of"),
    ("map", 'optimizer="sgd"', "map: optimizer must be 'lbfgs' or 'adam', got 'sgd'"),
])
def test_a_bad_engine_option_is_refused_before_any_map_runs(tmp_path, capsys, engine, option, says):
    # each map used to fail on its own, leaving run.json and a failures.csv row per map (exit 3)
    script = _script(tmp_path, MEAN)
    stack = _save(tmp_path, "d.npy", np.zeros((3, 4)))
    out = tmp_path / "o"
    msg = _err(capsys, ["run", script, "--data", stack, "--engine", engine, "--set", option,
                        "--out", str(out)])
    assert msg.startswith(f"bayessky run: error: --set: {says}"), msg
    assert not out.exists()


def test_device_out_and_empty_data_are_one_line_errors(tmp_path, capsys):
    script = _script(tmp_path, DENOISE)
    good = _save(tmp_path, "d.npy", np.zeros((4, 4)))
    assert "--device: unknown device 'gpu'" in _err(capsys, ["run", script, "--data", good, "--device", "gpu",
                                                             "--out", str(tmp_path / "o")])
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "--out:" in _err(capsys, ["run", script, "--data", good, "--out", str(afile)])
    assert "--out:" in _err(capsys, ["run", script, "--data", good, "--out", str(afile / "sub")])
    for name, shape in (("e0.npy", (0, 4, 4)), ("e1.npy", (4, 0))):
        msg = _err(capsys, ["run", script, "--data", _save(tmp_path, name, np.ones(shape)),
                            "--out", str(tmp_path / "o")])
        assert msg.startswith("bayessky run: error: --data:") and "empty" in msg, msg
    assert not (tmp_path / "o").exists()


def test_set_values_parse_like_python_and_json_booleans():
    from bayessky.cli.run import parse_sets

    got = parse_sets(["a=1", "b=[1, 2]", "c=name", "d=false", "e=True", "f='x'", "g=TRUE"])
    # "false" must not survive as the (truthy) string "false"
    assert got == {"a": 1, "b": [1, 2], "c": "name", "d": False, "e": True, "f": "x", "g": True}


COARSE = """
import pyro, pyro.distributions as dist, torch
DEFAULTS = {"engine": "map", "steps": 300, "init_strategy": "map"}
MAP_SITE = "phi"

def model(data):
    # the map site is a 4 x 4 field seen through 2 x 2 block copies: data and map differ in shape
    phi = pyro.sample("phi", dist.Normal(torch.zeros(4, 4, dtype=data.dtype), 1.0).to_event(2))
    up = phi.repeat_interleave(2, -2).repeat_interleave(2, -1)
    pyro.sample("obs", dist.Normal(up, 1.0).to_event(2), obs=data)
"""


def test_map_site_of_another_shape_than_the_data(tmp_path):
    # script defaults that start NUTS at the MAP must also run with the MAP engine, and the
    # maps figure must not pair the (8, 8) data with the (4, 4) map
    rng = np.random.default_rng(5)
    data = rng.normal(size=(8, 8))
    np.save(tmp_path / "d.npy", data)
    out = tmp_path / "out"
    assert main(["run", _script(tmp_path, COARSE), "--data", str(tmp_path / "d.npy"),
                 "--out", str(out)]) == 0
    mean = np.load(out / "map_mean.npy")
    # conjugate: phi_ij = (sum of its 4 data pixels) / (4 + 1)
    expect = data.reshape(4, 2, 4, 2).sum((1, 3)) / 5.0
    np.testing.assert_allclose(mean, expect, atol=1e-3)
    assert (out / "maps.png").stat().st_size > 0


# ---- packaged models by name -----------------------------------------------------------------------


def _hi_map(tmp_path, seed=11):
    from bayessky.families import hi_toy

    return _save(tmp_path, "hi.npy", hi_toy.sample(1, 0.3, 0.8, size=32, seed=seed)[0])


def test_packaged_model_by_name_matches_its_script_and_a_numpy_grid(tmp_path):
    data = _hi_map(tmp_path)
    script = str(Path(__file__).resolve().parents[1] / "inference" / "hi_parameters.py")
    # the learned likelihood (shipped hi-cglow-32): the name and the user's script run one model
    draws = {}
    for label, spec in (("name", "hi_parameters"), ("path", script)):
        out = tmp_path / label
        assert main(["run", spec, "--data", data, "--set", "grid_size=6", "--out", str(out)]) == 0
        meta = json.loads((out / "run.json").read_text())
        assert meta["engine"] == "grid" and meta["options"] == {"grid_size": 6}
        post = az.from_netcdf(out / "posterior.nc").posterior
        draws[label] = {k: post[k].values for k in ("Omega_m", "sigma_8")}
        assert draws[label]["Omega_m"].size == 1000  # the model's DEFAULTS num_samples
    for k in ("Omega_m", "sigma_8"):
        np.testing.assert_array_equal(draws["name"][k], draws["path"][k])
    # the exact likelihood by name: the draws' means are the numpy grid posterior's, within MC error
    n, g = 20_000, 8
    out = tmp_path / "exact"
    assert main(["run", "hi_parameters", "--data", data, "--set", "likelihood=exact",
                 "--set", f"grid_size={g}", "--set", f"num_samples={n}", "--out", str(out)]) == 0
    post = az.from_netcdf(out / "posterior.nc").posterior
    for k, (mean, sd) in grid_moments(np.load(data), g).items():
        d = post[k].values.ravel()
        assert abs(d.mean() - mean) < 4 * sd / n**0.5, (k, d.mean(), mean, sd)
        assert abs(d.std() / sd - 1) < 0.05, (k, d.std(), sd)


def test_stack_with_map_batch_gives_the_one_map_at_a_time_posteriors(tmp_path):
    """--set map_batch=3: the three maps' grid points in one batch (the learned likelihood's data
    is the value of its one observed site), the same posteriors as map by map to float32
    rounding, and the option recorded in run.json."""
    from bayessky.families import hi_toy

    data = _save(tmp_path, "hi3.npy", hi_toy.sample(3, [0.2, 0.3, 0.4], [0.7, 0.8, 0.9], size=32, seed=5))
    means = {}
    for mb in (1, 3):
        out = tmp_path / f"mb{mb}"
        assert main(["run", "hi_parameters", "--data", data, "--set", "grid_size=6", "--set",
                     f"map_batch={mb}", "--quiet", "--no-plots", "--out", str(out)]) == 0
        meta = json.loads((out / "run.json").read_text())
        assert meta["engine_options"]["map_batch"] == mb
        means[mb] = np.loadtxt(out / "summary.csv", delimiter=",", skiprows=1, usecols=(2, 3))
    np.testing.assert_allclose(means[3], means[1], rtol=1e-5, atol=1e-6)


def test_unknown_model_name_is_a_one_line_error_listing_the_models(tmp_path, capsys):
    good = _save(tmp_path, "d.npy", np.zeros((4, 4)))
    msg = _err(capsys, ["run", "no_such_model", "--data", good, "--out", str(tmp_path / "o")])
    assert msg.startswith("bayessky run: error: model: 'no_such_model' is neither a packaged model ("), msg
    assert "hi_parameters" in msg, msg
    msg = _err(capsys, ["run", str(tmp_path / "missing.py"), "--data", good])
    assert "no such file" in msg and "hi_parameters" in msg, msg
    assert not (tmp_path / "o").exists()
