"""Simulation-based calibration: an exact sampler passes, an overconfident one fails, Pyro NUTS and MCLMC pass
on a conjugate model; coverage vs binomial error; plots vs numpy histograms.

Model: mu ~ N(0, I_2), y_i ~ N(mu, 0.5^2 I_2), i = 1..3. Posterior N(m, v I) with
1/v = 1 + 3/0.25 and m = v sum_i y_i / 0.25 (closed form).
"""

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bayessky import infer  # noqa: E402
from bayessky.infer import calibrate  # noqa: E402

SIG = 0.5
NOBS = 3
V = 1.0 / (1.0 + NOBS / SIG**2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_num_threads(n)
    torch.set_default_dtype(dtype)


def model(data):
    mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pyro.plate("obs", NOBS, dim=-1):
        pyro.sample("y", dist.Normal(mu, SIG).to_event(1), obs=data)


def closed_form_engine(scale=1.0, n=400):
    """Independent posterior sampler (numpy, closed form); ``scale`` < 1 makes it overconfident."""
    rng = np.random.default_rng(0)

    def engine(m, data):
        mean = V * data.numpy().sum(0) / SIG**2
        draws = mean + scale * np.sqrt(V) * rng.standard_normal((1, n, 2))
        return az.from_dict(posterior={"mu": draws})

    return engine


def test_find_data_site():
    assert calibrate.find_data_site(model) == "y"
    with pytest.raises(ValueError, match="data_site") as err:
        calibrate.find_data_site(model, "mu_typo")
    assert "\n" not in str(err.value)


def test_exact_sampler_is_calibrated_overconfident_is_not():
    M, L = 400, 49
    good = infer.sbc(model, closed_form_engine(), num_datasets=M, num_draws=L, seed=0)
    assert good.ranks["mu"].shape == (M, 2) and good.ranks["mu"].max() <= L
    for name, p in good.uniformity().items():
        assert (p["chi2_pvalue"] > 0.001).all() and (p["ks_pvalue"] > 0.001).all(), (name, p)
    for q in good.levels:
        # within 3.5 binomial standard errors (8 checks) of nominal
        assert np.all(np.abs(good.coverage[q]["mu"] - q) < 3.5 * good.coverage_std(q) + 0.5 / M)
    bad = infer.sbc(model, closed_form_engine(scale=0.6), num_datasets=M, num_draws=L, seed=0)
    p = bad.uniformity()["mu"]
    assert (p["chi2_pvalue"] < 1e-6).all() and (p["ks_pvalue"] < 1e-6).all()
    # an interval 0.6x too narrow covers P(|Z| < 0.6 z_{0.95}) = 0.675 instead of 0.9
    assert np.all(np.abs(bad.coverage[0.9]["mu"] - 0.675) < 3.5 * np.sqrt(0.675 * 0.325 / M))


def test_nuts_sbc_on_conjugate_model():
    engine = lambda m, d: infer.nuts(m, d, num_samples=80, warmup_steps=60, jit=True,  # noqa: E731
                                     progress_bar=False, seed=int(1e6 * float(d[0, 0])) % 2**31)
    M, L = 40, 15
    res = infer.sbc(model, engine, num_datasets=M, num_draws=L, seed=1)
    p = res.uniformity()["mu"]
    print(f"\nnuts-sbc: chi2 p {p['chi2_pvalue']}, KS p {p['ks_pvalue']}, coverage "
          + ", ".join(f"{q}: {res.coverage[q]['mu']}" for q in res.levels))
    # 4 tests at the 0.005 level; a biased or overconfident sampler gives p ~ 1e-6 (previous test)
    assert (p["chi2_pvalue"] > 0.005).all() and (p["ks_pvalue"] > 0.005).all(), p
    for q in res.levels:
        # coverage from 80 correlated draws; 3.5 binomial standard errors + the interval's own
        # quantile noise (~0.02)
        tol = 3.5 * res.coverage_std(q) + 0.02
        assert np.all(np.abs(res.coverage[q]["mu"] - q) < tol), (q, res.coverage[q])
    # truths are the prior draws: mean 0, sd 1
    t = res.truths["mu"]
    assert np.all(np.abs(t.mean(0)) < 4 / np.sqrt(M)) and np.all(np.abs(t.std(0) - 1) < 4 / np.sqrt(2 * M))


def test_plots_match_numpy():
    res = infer.sbc(model, closed_form_engine(), num_datasets=100, num_draws=19, seed=2)
    fig = calibrate.plot_ranks(res, bins=5)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 2 and axes[1].get_title() == "mu[1]"
    # the histogram's bars (its BarContainer, not the axhspan band), left to right: each bar's
    # edges and height must be numpy's bin at that position
    bars = sorted((p for c in axes[1].containers for p in c.patches), key=lambda p: p.get_x())
    ref, edges = np.histogram(res.ranks["mu"][:, 1], bins=np.linspace(-0.5, 19.5, 6))
    assert len(bars) == 5
    np.testing.assert_allclose([p.get_x() for p in bars], edges[:-1])
    np.testing.assert_allclose([p.get_x() + p.get_width() for p in bars], edges[1:])
    assert [p.get_height() for p in bars] == ref.tolist(), ([p.get_height() for p in bars], ref)
    fig2 = calibrate.plot_coverage(res)
    lines = fig2.axes[0].lines
    ys = [ln.get_ydata() for ln in lines if len(ln.get_ydata()) == len(res.levels)]
    for i in range(2):  # one errorbar series per parameter element, in order
        np.testing.assert_allclose(ys[i], [res.coverage[q]["mu"][i] for q in res.levels])


def test_sbc_bad_inputs_one_line():
    for kw, match in (({"num_datasets": 0}, "num_datasets"), ({"num_draws": 0}, "num_draws"),
                      ({"levels": (0.5, 1.2)}, "levels"), ({"params": ["sigma"]}, "params")):
        with pytest.raises(ValueError, match=match) as err:
            infer.sbc(model, closed_form_engine(), **kw)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="engine") as err:
        infer.sbc(model, "nuts")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("adjusted", [True, False], ids=["mams", "mclmc"])
def test_mclmc_sbc_on_conjugate_model(adjusted):
    """SBC of the MCLMC engine: the adjusted sampler (MAMS) is exact, the unadjusted one at its
    default energy-variance target has a bias far below the posterior width; both give uniform
    ranks and nominal coverage on the conjugate model (an overconfident sampler fails the same
    checks, test above)."""
    def engine(m, d):
        return infer.mclmc(m, d, num_samples=150, warmup_steps=150, num_chains=2, adjusted=adjusted,
                           progress_bar=False, seed=int(1e6 * float(d[0, 0])) % 2**31)

    M, L = 40, 15
    res = infer.sbc(model, engine, num_datasets=M, num_draws=L, seed=3)
    p = res.uniformity()["mu"]
    assert (p["chi2_pvalue"] > 0.005).all() and (p["ks_pvalue"] > 0.005).all(), p
    for q in res.levels:
        tol = 3.5 * res.coverage_std(q) + 0.02
        assert np.all(np.abs(res.coverage[q]["mu"] - q) < tol), (q, res.coverage[q])
