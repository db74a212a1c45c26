"""bayessky.infer.mclmc against closed forms: a correlated Gaussian (Wiener) posterior, the bias
control of the unadjusted sampler, Neal's funnel for the adjusted one (MAMS), reproducibility and
the InferenceData layout.

The Gaussian posterior: x ~ N(0, S) with S = Q diag(logspace(-2, 2)) Q^T (d = 20, Q a random
rotation), y ~ N(x, I) observed, so the posterior is N(P y, P) with P = (S^-1 + I)^-1 (condition
number ~ 100, correlated: a diagonal preconditioner does not remove the correlations). The
funnel: v ~ N(0, 3^2), x ~ N(0, exp(v)) (one x), whose v-marginal is exactly N(0, 3^2).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from bayessky.infer import mclmc

D = 20


def _gaussian():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    prior = (q * np.logspace(-2, 2, D)) @ q.T
    y = 2.0 * rng.standard_normal(D)
    post_cov = np.linalg.inv(np.linalg.inv(prior) + np.eye(D))
    tril = torch.linalg.cholesky(torch.tensor(prior))

    def model(y):
        x = pyro.sample("x", dist.MultivariateNormal(torch.zeros(D, dtype=torch.float64), scale_tril=tril))
        pyro.sample("y", dist.Normal(x, 1.0).to_event(1), obs=y)

    return model, torch.tensor(y), post_cov @ y, np.sqrt(np.diag(post_cov))


GAUSS = _gaussian()


def _run(**kw):
    model, y, _, _ = GAUSS
    opts = dict(num_samples=1500, warmup_steps=1000, num_chains=4, thinning=2, seed=0, jit=True,
                progress_bar=False)
    opts.update(kw)
    return mclmc(model, y, **opts)


def _errors(idata):
    """(max |mean error| / MCSE, max |sd ratio - 1|, mean sd ratio - 1) over coordinates."""
    _, _, mean, sd = GAUSS
    x = idata.posterior["x"].values.reshape(-1, D)
    ess = az.ess(idata, var_names=["x"])["x"].values
    mcse = sd / np.sqrt(ess)
    ratio = x.std(0) / sd - 1.0
    return np.max(np.abs(x.mean(0) - mean) / mcse), np.max(np.abs(ratio)), ratio.mean()


@pytest.fixture(scope="module")
def unadjusted():
    return _run()


def test_unadjusted_matches_the_gaussian_posterior(unadjusted):
    z, sd_max, sd_mean = _errors(unadjusted)
    assert z < 3.5  # the largest of 20 coordinates: |N(0, 1)| rarely exceeds 3.5
    assert sd_max < 0.05
    assert abs(sd_mean) < 0.015  # no visible bias at the default energy-variance target


def test_adjusted_matches_the_gaussian_posterior():
    idata = _run(adjusted=True, num_samples=1000, warmup_steps=600, thinning=1)
    z, sd_max, sd_mean = _errors(idata)
    assert z < 3.5
    assert sd_max < 0.05
    acc = float(idata.sample_stats["acceptance_rate"].mean())
    assert 0.8 < acc < 0.97  # dual averaging toward 0.9


def test_a_loose_energy_target_biases_the_unadjusted_sampler(unadjusted):
    """Negative control: the energy-variance target is what keeps the bias small."""
    loose = _run(desired_energy_var=0.5)
    _, sd_max_default, sd_mean_default = _errors(unadjusted)
    _, sd_max_loose, sd_mean_loose = _errors(loose)
    eps = float(unadjusted.sample_stats["step_size"][0, 0])
    assert float(loose.sample_stats["step_size"][0, 0]) > 1.3 * eps
    assert sd_mean_loose < -0.05  # variances shrink at large steps
    assert sd_max_loose > 2 * sd_max_default


@pytest.mark.filterwarnings("ignore:mclmc.*divergent")
def test_adjusted_samples_neals_funnel():
    def model():
        v = pyro.sample("v", dist.Normal(0.0, 3.0))
        pyro.sample("x", dist.Normal(torch.zeros(1), torch.exp(v / 2)).to_event(1))

    # divergences in the neck are expected (and rejected): the draws stay exact
    idata = mclmc(model, num_samples=1500, warmup_steps=500, num_chains=8, adjusted=True, seed=1,
                  progress_bar=False)
    v = idata.posterior["v"].values
    ess = float(az.ess(idata, var_names=["v"])["v"])
    assert ess > 100
    assert abs(v.mean()) < 3 * 3.0 / np.sqrt(ess)
    assert abs(v.std() / 3.0 - 1) < 0.15


def test_same_seed_same_draws_and_layout():
    model, y, _, _ = GAUSS
    kw = dict(num_samples=30, warmup_steps=60, num_chains=2, seed=3, progress_bar=False)
    a = mclmc(model, y, **kw)
    b = mclmc(model, y, **kw)
    c = mclmc(model, y, **{**kw, "seed": 4})
    np.testing.assert_array_equal(a.posterior["x"].values, b.posterior["x"].values)
    assert not np.array_equal(a.posterior["x"].values, c.posterior["x"].values)
    assert a.posterior["x"].shape == (2, 30, D)
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in a.groups()
    for stat in ("energy_change", "step_size", "L", "diverging", "lp", "n_steps"):
        assert stat in a.sample_stats
    adj = mclmc(model, y, **{**kw, "adjusted": True})
    assert "acceptance_rate" in adj.sample_stats
    assert adj.sample_stats["acceptance_rate"].shape == (2, 30)


def test_argument_errors():
    model, y, _, _ = GAUSS
    with pytest.raises(ValueError, match="desired_energy_var"):
        mclmc(model, y, desired_energy_var=0.0, progress_bar=False)
    with pytest.raises(ValueError, match="integrator"):
        mclmc(model, y, integrator="rk4", progress_bar=False)

    def one_d():
        pyro.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="at least 2 dimensions"):
        mclmc(one_d, num_samples=5, warmup_steps=5, progress_bar=False)
