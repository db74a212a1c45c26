"""NUTS, emcee, SVI and the grid agree on the 2-parameter hi-toy posterior (N = 16 maps).

16 maps of 16 x 16 pixels drawn at (Omega_m, sigma_8) = (0.3, 0.8), exact likelihood
(``bayessky.families.hi_toy.log_likelihood``, a ``pyro.factor``), uniform priors on the CAMELS box.
The grid (120 x 120 cell centres, exact quadrature) is the reference; each engine's posterior mean
must lie within 0.2 posterior sd of it, and its sd within 20 %.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from bayessky import infer

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    hi_toy = pytest.importorskip("bayessky.families.hi_toy")
    maps = torch.as_tensor(hi_toy.sample(16, 0.3, 0.8, size=16, seed=3))

    def model(data):
        om = pyro.sample("Omega_m", dist.Uniform(torch.tensor(0.1, dtype=F64), 0.5))
        s8 = pyro.sample("sigma_8", dist.Uniform(torch.tensor(0.6, dtype=F64), 1.0))
        pyro.factor("maps", hi_toy.log_likelihood(data, om, s8).sum(-1))

    n = 120
    axes = {"Omega_m": 0.1 + (np.arange(n) + 0.5) * 0.4 / n, "sigma_8": 0.6 + (np.arange(n) + 0.5) * 0.4 / n}
    ref = infer.grid(model, maps, grid=axes)
    return model, maps, ref


def _check(idata, ref, engine):
    out = {}
    for k in ("Omega_m", "sigma_8"):
        v = idata.posterior[k].values.reshape(-1)
        dev = (v.mean() - ref.mean[k]) / ref.std[k]
        out[k] = dev
        print(f"\n{engine}: {k} mean dev {dev:+.3f} sd, sd ratio {v.std() / ref.std[k]:.3f}")
        assert abs(dev) < 0.2, (engine, k, dev)
        assert abs(v.std() / ref.std[k] - 1) < 0.2, (engine, k, v.std() / ref.std[k])
    return out


def test_reference_posterior_is_inside_the_box(setup):
    _, _, ref = setup
    # the comparison is meaningful only if the posterior is not cut by the prior edges
    for k, (lo, hi) in (("Omega_m", (0.1, 0.5)), ("sigma_8", (0.6, 1.0))):
        assert lo + 2 * ref.std[k] < ref.mean[k] < hi - 2 * ref.std[k]


def test_nuts_agrees_with_grid(setup):
    model, maps, ref = setup
    # the posterior is strongly correlated: a dense mass matrix keeps the trees short
    idata = infer.nuts(model, maps, num_samples=300, warmup_steps=300, dense_mass=True,
                       progress_bar=False, seed=0)
    _check(idata, ref, "nuts")


def test_emcee_agrees_with_grid(setup):
    model, maps, ref = setup
    _check(infer.emcee(model, maps, walkers=16, steps=700, burn=200, seed=0), ref, "emcee")


def test_svi_agrees_with_grid(setup):
    model, maps, ref = setup
    idata = infer.svi(model, maps, guide="mvn", steps=600, lr=0.05, final_lr=0.002, num_particles=16,
                      num_samples=4000, seed=0)
    _check(idata, ref, "svi")
