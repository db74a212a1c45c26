"""Metrics of the hi-toy benchmarks (benchmarks/_hi_common.py) against closed forms and scipy.

- discrete KL: scipy.stats.entropy on random categoricals; two Gaussians on a fine grid vs the
  closed-form Gaussian KL;
- central intervals: Gaussian on a fine grid vs scipy.stats.norm quantiles;
- HPD membership: 2-D Gaussian on a grid vs the chi^2_2 radius of the ellipse;
- coverage and RMSE on a calibrated (and a deliberately overconfident) Gaussian toy whose
  coverage and Bayes risk are known in closed form;
- benchmarks/hi_vs_exact.py on a few maps: its exact posteriors (the packaged model
  ``bayessky.models.hi_parameters`` through the grid engine) vs an independent numpy likelihood.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_hi_common.py"
_spec = importlib.util.spec_from_file_location("bench_hi_common", _PATH)
hc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hc)


def test_discrete_kl_matches_scipy_entropy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(60), size=5).reshape(5, 6, 10)
    q = rng.dirichlet(np.ones(60) * 0.5, size=5).reshape(5, 6, 10)
    p[0, 0, :3] = 0.0  # zero-mass cells contribute nothing (0 log 0 = 0)
    p[0] /= p[0].sum()
    with np.errstate(divide="ignore"):
        got = hc.discrete_kl(np.log(p), np.log(q))
    ref = np.array([stats.entropy(p[i].ravel(), q[i].ravel()) for i in range(5)])
    np.testing.assert_allclose(got, ref, rtol=1e-12)  # same sum in float64: rounding only
    np.testing.assert_allclose(hc.discrete_kl(np.log(q), np.log(q)), 0.0, atol=1e-14)


def test_discrete_kl_of_gridded_gaussians_is_the_continuous_kl():
    x = np.linspace(-12, 12, 4801)  # h = 0.005: midpoint-rule error O(h^2) ~ 1e-6 relative
    m1, s1, m2, s2 = 0.3, 1.0, -0.4, 1.7
    lp = hc.normalise_log_weights(stats.norm.logpdf(x, m1, s1), ndim=1)
    lq = hc.normalise_log_weights(stats.norm.logpdf(x, m2, s2), ndim=1)
    ref = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    assert abs(float(hc.discrete_kl(lp, lq, ndim=1)) - ref) < 1e-6


def test_central_interval_matches_normal_quantiles():
    n, lo, hi = 2000, -8.0, 8.0
    v = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    mu, sd = np.array([0.0, 1.3]), np.array([1.0, 0.6])
    # exact cell masses (CDF differences): the uniform-within-cell CDF is then exact at edges
    edges = np.linspace(lo, hi, n + 1)
    mass = np.diff(stats.norm.cdf(edges[None], mu[:, None], sd[:, None]), axis=1)
    for q in (0.68, 0.95):
        a, b = hc.central_interval(v, mass, q)
        ra, rb = stats.norm.interval(q, mu, sd)
        # linear CDF inside a cell of width h = 0.008 moves a quantile x by about
        # h^2/8 |f'/f| = h^2/8 |x - mu| / sd^2 <= 3.3e-5 (sd 0.6, 95 %)
        np.testing.assert_allclose(a, ra, atol=4e-5)
        np.testing.assert_allclose(b, rb, atol=4e-5)


def test_hpd_membership_is_the_chi2_ellipse():
    n = 161
    ax = np.linspace(-5, 5, n)  # h = 0.0625
    xx, yy = np.meshgrid(ax, ax, indexing="ij")
    s1, s2 = 1.0, 0.5
    r2 = (xx / s1) ** 2 + (yy / s2) ** 2
    w = np.exp(-0.5 * r2)
    w = (w / w.sum())[None]
    for q in (0.68, 0.95):
        t = hc.hpd_threshold(w, q)[0]
        c = stats.chi2.ppf(q, 2)
        inside = w[0] >= t
        # grid discreteness moves the boundary by O(h); cells away from it must agree
        far = np.abs(r2 - c) > 0.05 * c
        assert np.array_equal(inside[far], r2[far] < c)
        # the region holds at least the requested mass, and at most one more (boundary) cell's worth
        mass = float(w[0][inside].sum())
        assert q <= mass < q + t * np.sum(w[0] == t) + 1e-12
        # hpd_contains agrees with the threshold, cell by cell (every 23rd cell, both axes)
        idx = np.array([[i, j] for i in range(0, n, 23) for j in range(0, n, 23)])
        got = hc.hpd_contains(np.broadcast_to(w, (len(idx), n, n)), idx, q)
        assert np.array_equal(got, inside[idx[:, 0], idx[:, 1]])


def test_hpd_contains_matches_grid_posterior_credible_region():
    gp = pytest.importorskip("bayessky.infer.grid_posterior")
    rng = np.random.default_rng(3)
    ll = rng.normal(0, 2, size=(4, 12, 9))
    post = gp.GridPosterior({"a": np.arange(12.0), "b": np.arange(9.0)}, np.zeros_like(ll), ll, stacked=True)
    for q in (0.68, 0.95):
        region = post.credible_region(q)
        idx = np.array([[i, j] for i in range(12) for j in range(9)])
        t = hc.hpd_threshold(post.weights, q)
        for m in range(4):
            assert np.array_equal(post.weights[m] >= t[m], region[m])
            got = hc.hpd_contains(np.broadcast_to(post.weights[m], (len(idx), 12, 9)), idx, q)
            assert np.array_equal(got, region[m].ravel())


def _gaussian_toy(n_rep: int, scale: float, seed: int = 1):
    """theta ~ N(0, I_2), x ~ N(theta, I_2): posterior N(x / 2, I / 2). ``scale`` < 1 shrinks the
    reported posterior's std (overconfident). Returns axes, log weights (n_rep, n, n), truths, data."""
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((n_rep, 2))
    x = theta + rng.standard_normal((n_rep, 2))
    # cell centres, h = 0.197 = 0.28 posterior sd (the 40 x 40 hi grid has h ~ 0.17-0.2 sd); the
    # box edge at +-6 is ~ 4.5 posterior sd or more from every posterior mean x / 2
    ax = -6 + (np.arange(61) + 0.5) * 12 / 61
    axes = {"a": ax, "b": ax}
    sd = scale * math.sqrt(0.5)
    lw = (-0.5 * ((ax[None, :, None] - x[:, 0, None, None] / 2) ** 2
                  + (ax[None, None, :] - x[:, 1, None, None] / 2) ** 2) / sd**2)
    return axes, hc.normalise_log_weights(lw), theta, x


@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_coverage_and_rmse_of_a_gaussian_toy(scale):
    n_rep = 2000
    axes, lw, theta, x = _gaussian_toy(n_rep, scale)
    s = hc.grid_summary(axes, lw, theta, levels=(0.68, 0.95))
    for q in (0.68, 0.95):
        # the reported posterior N(mu, scale^2 s^2) vs the truth's N(mu, s^2):
        # central interval: P(|Z| < scale z_q); HPD ellipse: P(chi2_2 < scale^2 chi2_q)
        ref_int = 2 * stats.norm.cdf(scale * stats.norm.ppf(0.5 + q / 2)) - 1
        ref_hpd = stats.chi2.cdf(scale**2 * stats.chi2.ppf(q, 2), 2)
        # binomial noise sd <= sqrt(0.25 / 2000) = 1.1 points: 4 sd = 4.5 points; the HPD adds
        # grid discreteness (the truth's cell vs the boundary; the region holds >= q) ~ 0.5 point
        # (measured over seeds 1-3: all deviations <= 1.8 points)
        for k in ("a", "b"):
            assert abs(hc.coverage(s["in_interval"][k][q]) - ref_int) < 0.045
        assert abs(hc.coverage(s["in_hpd"][q]) - ref_hpd) < 0.05
    # Bayes risk of the posterior mean = posterior variance 1/2 (independent of ``scale``: the
    # mean is the same); MSE estimate has relative sd sqrt(2/2000) = 3.2 %, so 4 sd = 13 %
    for i, k in enumerate(("a", "b")):
        # posterior mean x / 2; cutting the Gaussian at the box edge, d >~ 4.5 sd away, shifts the
        # mean by about sd phi(d) < 1.2e-5
        np.testing.assert_allclose(s["mean"][k], x[:, i] / 2, atol=2e-5)
        assert abs(hc.rmse(s["mean"][k], theta[:, i]) ** 2 / 0.5 - 1) < 0.13
        # a Gaussian sampled at spacing h < sd has the discrete mean and variance of the continuous
        # one up to exp(-2 pi^2 sd^2 / h^2) (Poisson summation): tiny; the box-edge cut (above)
        # shrinks the std of the few posteriors nearest the edge by < 2e-5 relative
        np.testing.assert_allclose(s["std"][k], scale * math.sqrt(0.5), rtol=2e-5)


def test_cell_index_and_axes():
    ax = hc.cell_axes(40)
    np.testing.assert_allclose(ax["Omega_m"][[0, -1]], [0.105, 0.495])
    np.testing.assert_allclose(ax["sigma_8"][[0, -1]], [0.605, 0.995])
    x = np.array([0.1, 0.1099, 0.1101, 0.3003, 0.4999, 0.7])  # off the cell edges
    # brute force: the cell whose [lo, hi) contains x, clipped to the grid
    ref = [min(int(np.sum(ax["Omega_m"] - 0.005 <= v)) - 1, 39) for v in x]
    assert hc.cell_index(ax["Omega_m"], x).tolist() == [max(r, 0) for r in ref]


def test_max_rel_dev():
    assert hc.max_rel_dev([1.0, 2.2, np.nan], [1.0, 2.0, 3.0]) == pytest.approx(0.1)


def test_hi_vs_exact_runs_the_packaged_model_and_matches_a_numpy_grid(capsys):
    """benchmarks/hi_vs_exact.py end to end on 3 maps, 6 x 6 grid: its exact posteriors (the packaged
    model through bayessky.infer.grid) against the independent numpy likelihood of tests/_hi_reference."""
    from _hi_reference import grid_moments

    spec = importlib.util.spec_from_file_location("bench_hi_vs_exact", _PATH.parent / "hi_vs_exact.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    n_maps, g = 3, 6
    assert bench.main(["--prior", "hi-cglow-32", "--n-maps", str(n_maps), "--size", "32", "--grid", str(g),
                       "--nuts-maps", "0", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "bayessky.models.hi_parameters"
    maps, truth = bench.make_maps(n_maps, 32, 100_000)
    ref = [grid_moments(m, g) for m in maps]
    for i, k in enumerate(("Omega_m", "sigma_8")):
        rmse = math.sqrt(np.mean([(r[k][0] - t) ** 2 for r, t in zip(ref, truth[:, i])]))
        assert result["exact"]["rmse"][k] == pytest.approx(rmse, rel=1e-9)
        mean_std = np.mean([r[k][1] for r in ref])
        assert result["exact"]["mean_posterior_std"][k] == pytest.approx(mean_std, rel=1e-9)
    exact_check, flow_check = result["checks"]["model_vs_direct"]
    assert exact_check["likelihood"] == "exact" and exact_check["n_maps"] == n_maps
    assert exact_check["max_abs_dlogw_where_w>1e-8"] < 1e-9
    assert flow_check["likelihood"] == "flow" and flow_check["max_abs_dlogw_where_w>1e-8"] < 1e-5
