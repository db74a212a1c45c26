"""Dust inpainting pieces (bayessky.models.dust_inpainting, the benchmarks' benchmarks/_dust_common.py)
against independent references: dense-matrix Gaussian posteriors, the element-wise log-normal
covariance, Pyro traces of the true model, a numpy Hartley transform and brute-force loops for the
metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from scipy import stats

from bayessky.families import dust_toy
from bayessky.models import dust_inpainting
from bayessky.stats import minkowski_functionals

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _dust_common as dc  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    # these are many tiny tensor ops: on a busy 2-core machine a second intra-op thread makes the
    # NUTS test 30-60x slower (spin waits), so pin one thread and restore afterwards
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _dense_circulant(spectrum: np.ndarray) -> np.ndarray:
    """Dense covariance Cov(x_i, x_j) = (1/N) sum_k S_k exp(i k (r_i - r_j)) by explicit 2-D DFT matrices."""
    n = spectrum.shape[0]
    idx = np.arange(n)
    f1 = np.exp(-2j * np.pi * np.outer(idx, idx) / n)
    F = np.kron(f1, f1)  # (n^2, n^2) 2-D DFT on row-major flattened maps
    return np.real(F.conj().T @ np.diag(spectrum.ravel()) @ F) / n**2


def _problem(n=16, seed=3, kind="point"):
    I = dust_toy.sample(1, n, seed=seed)[0]
    mask = (
        dust_toy.point_source_mask(n, seed=seed, fraction=0.15)
        if kind == "point"
        else dust_toy.strip_mask(n, seed=seed, width=3)
    )
    d = dust_toy.observe(I, mask, seed=seed + 1)
    return I, mask, d


# -- spectra -----------------------------------------------------------------------------------------
def test_intensity_spectrum_is_the_lognormal_covariance():
    # Cov(I_x, I_y) = exp(0.64 Cov(g_x, g_y)) - 1 element-wise (log-normal moments), from the dense
    # covariance of g; the circulant of S_I must reproduce it to round-off.
    n = 8
    cov_g = _dense_circulant(dust_toy.spectrum(n))
    cov_i = np.expm1(dust_toy.AMPLITUDE**2 * cov_g)
    np.testing.assert_allclose(_dense_circulant(dust_toy.intensity_spectrum(n)), cov_i, atol=1e-12)


def test_intensity_spectrum_against_monte_carlo():
    # E|fft2(I - 1)_k|^2 / N^2 from 20000 maps: each mode's estimate has relative sd
    # 1/sqrt(20000) ~ 0.7 % for Gaussian modes; log-normal tails widen it, 5 % is > 5 sigma.
    n = 8
    I = dust_toy.sample(20000, n, seed=11)
    est = (np.abs(np.fft.fft2(I - 1.0)) ** 2).mean(0) / n**2
    np.testing.assert_allclose(est, dust_toy.intensity_spectrum(n), rtol=0.05)


def test_hartley_diagonalises_even_spectra():
    from bayessky.sky import hartley2

    x = torch.randn(3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = torch.as_tensor(dust_toy.spectrum(8))
    np.testing.assert_allclose(hartley2(hartley2(x)), x, atol=1e-13)
    dense = _dense_circulant(s.numpy())
    ref = (x.reshape(3, -1).numpy() @ dense.T).reshape(3, 8, 8)
    np.testing.assert_allclose(hartley2(s * hartley2(x)).numpy(), ref, atol=1e-12)


# -- Gaussian inpainting -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["point", "strip"])
def test_wiener_inpaint_matches_dense_closed_form(kind):
    # data-space form of the posterior mean, a different formula from the CG's precision form:
    #   I = mu + C M^T (M C M^T + sigma^2)^-1 (d_obs - mu)
    n, sigma = 16, 0.05
    _, mask, d = _problem(n, kind=kind)
    S = dust_toy.intensity_spectrum(n)
    C = _dense_circulant(S)
    obs = mask.ravel() > 0.5
    K = C[np.ix_(obs, obs)] + sigma**2 * np.eye(obs.sum())
    ref = 1.0 + C[:, obs] @ np.linalg.solve(K, d.ravel()[obs] - 1.0)
    mean, info = dc.wiener_inpaint(
        torch.as_tensor(d), torch.as_tensor(mask), S, noise_sigma=sigma, tol=1e-12
    )
    assert info["relative_residual"] < 1e-11
    np.testing.assert_allclose(mean.numpy().ravel(), ref, atol=1e-8 * np.abs(ref).max())


def test_wiener_denoise_is_the_per_mode_filter():
    # no mask: the posterior mean is diagonal in Fourier space, S / (S + sigma^2) per mode
    n, sigma = 16, 0.3
    I = dust_toy.sample(1, n, seed=5)[0]
    d = dust_toy.observe(I, None, noise_sigma=sigma, seed=6)
    S = dust_toy.intensity_spectrum(n)
    ref = 1.0 + np.real(np.fft.ifft2(np.fft.fft2(d - 1.0) * S / (S + sigma**2)))
    mean, info = dc.wiener_inpaint(torch.as_tensor(d), None, S, noise_sigma=sigma)
    assert info["iterations"] <= 2  # the Fourier preconditioner is the exact inverse here
    np.testing.assert_allclose(mean.numpy(), ref, atol=1e-9)


def test_constrained_realisations_have_the_dense_posterior_moments():
    # 4000 exact draws on 8x8: mean error per pixel has sd std/sqrt(4000); max over 64 pixels
    # stays below 4.5 sd. Sample variances have relative sd sqrt(2/4000) = 2.2 %: 10 % is > 4 sd.
    n, sigma, ns = 8, 0.05, 4000
    _, mask, d = _problem(n, seed=7)
    S = dust_toy.intensity_spectrum(n)
    C = _dense_circulant(S)
    W = np.diag(mask.ravel() / sigma**2)
    cov = np.linalg.inv(np.linalg.inv(C) + W)
    mean = 1.0 + cov @ (W @ (d.ravel() - 1.0))
    draws, _ = dc.constrained_realisations(
        torch.as_tensor(d),
        torch.as_tensor(mask),
        S,
        ns,
        noise_sigma=sigma,
        generator=torch.Generator().manual_seed(1),
    )
    x = draws.numpy().reshape(ns, -1)
    sd = np.sqrt(np.diag(cov))
    assert np.max(np.abs(x.mean(0) - mean) / (sd / np.sqrt(ns))) < 4.5
    np.testing.assert_allclose(x.var(0), np.diag(cov), rtol=0.10)


# -- potentials ----------------------------------------------------------------------------------------
def _pyro_log_joint(model, *args, values, **kwargs) -> float:
    cond = pyro.poutine.condition(model, data=values)
    tr = pyro.poutine.trace(cond).get_trace(*args, **kwargs)
    return float(tr.log_prob_sum())


def _hartley_numpy(x: np.ndarray) -> np.ndarray:
    X = np.fft.fft2(x, norm="ortho")
    return X.real - X.imag


def test_true_potential_equals_the_pyro_model_up_to_a_constant():
    # -U of the benchmarks' potential (the packaged model through bayessky.infer.potential) must
    # equal log p(g, d) of dust_toy.model (Pyro trace) up to an additive constant
    n = 8
    _, mask, d = _problem(n, seed=9)
    dt, mt = torch.as_tensor(d), torch.as_tensor(mask)
    pot_g = dc.true_model_potential(dt, mt)
    gen = torch.Generator().manual_seed(2)
    diffs_g = []
    for _ in range(3):
        g = torch.randn(n, n, dtype=torch.float64, generator=gen)
        lj = _pyro_log_joint(dust_toy.model, dt, mt, values={"g": g})
        diffs_g.append(lj + float(pot_g(g.reshape(-1))))
    assert np.ptp(diffs_g) < 1e-8
    I = torch.as_tensor(dust_toy.sample(2, n, seed=5))
    np.testing.assert_allclose(pot_g.to_map(pot_g.from_map(I)), I, rtol=1e-12)


def test_model_matches_the_true_model():
    # the packaged model with prior="true" is the same joint density as dust_toy.model
    n = 8
    _, mask, d = _problem(n, seed=13)
    dt, mt = torch.as_tensor(d), torch.as_tensor(mask)
    g = torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ref = _pyro_log_joint(dust_toy.model, dt, mt, values={"g": g})
    got = _pyro_log_joint(dust_inpainting.model, dt, mask=mt, prior="true", values={"g": g})
    assert abs(got - ref) < 1e-8
    # latent form: g = H(sqrt(S) u), u ~ N(0, 1) (H the orthonormal Hartley transform, here in
    # numpy): log p(u) + likelihood = log p(g) + likelihood + const
    sqrt_s = np.sqrt(dust_toy.spectrum(n))
    vals = []
    for s in range(3):
        u = torch.randn(n * n, dtype=torch.float64, generator=torch.Generator().manual_seed(10 + s))
        g = torch.as_tensor(_hartley_numpy(sqrt_s * u.numpy().reshape(n, n)))
        vals.append(
            _pyro_log_joint(
                dust_inpainting.model, dt, mask=mt, prior="true", space="latent", values={"g_latent": u}
            )
            - _pyro_log_joint(dust_toy.model, dt, mt, values={"g": g})
        )
    assert np.ptp(vals) < 1e-8


def test_hessian_block_is_the_prior_precision_in_the_holes():
    # in masked pixels the likelihood is flat, so the Hessian block of U(g) is (C_g^-1)_hh exactly
    n = 8
    _, mask, d = _problem(n, seed=15)
    pot = dc.true_model_potential(torch.as_tensor(d), torch.as_tensor(mask))
    hole = torch.nonzero(torch.as_tensor(mask).reshape(-1) == 0).flatten()
    g0 = torch.randn(n * n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h = dc.hessian_block(pot, g0, hole, chunk_size=7)
    prec = np.linalg.inv(_dense_circulant(dust_toy.spectrum(n)))
    np.testing.assert_allclose(h.numpy(), prec[np.ix_(hole.numpy(), hole.numpy())], atol=1e-8)
    r = dc.block_root(h)
    np.testing.assert_allclose((r @ r.mT).numpy(), np.linalg.inv(h.numpy()), rtol=1e-8, atol=1e-10)


def test_learned_prior_potential_is_the_flow_density_plus_likelihood():
    # U(T(x)) = -[log p_flow(x) - log|dT/dx|] - log N(d | x, sigma) + const, with the flow density
    # from FlowDistribution and the Gaussian likelihood from scipy.stats.norm
    from bayessky.distributions import FlowDistribution
    from bayessky.distributions.transforms import Log10Transform, StandardiseTransform, compose
    from bayessky.nn import Glow
    from bayessky.priors import FlowPrior

    torch.manual_seed(0)
    n, sigma = 8, 0.05
    net = Glow((1, n, n), levels=2, steps=1, hidden=8).double().eval()
    tr = compose(Log10Transform(), StandardiseTransform(-0.14, 0.35))
    prior = FlowPrior(net, {"kind": "glow"}, transform=tr)
    I, mask, d = _problem(n, seed=17)
    pot = dc.learned_prior_potential(
        dust_inpainting.model, prior, torch.as_tensor(d), torch.as_tensor(mask), sigma
    )
    vals = []
    for s in range(3):
        x = torch.as_tensor(dust_toy.sample(1, n, seed=30 + s)[0])
        y = tr(x)
        ladj = float(tr.log_abs_det_jacobian(x, y).sum())
        lp = float(FlowDistribution(net, transform=tr).log_prob(x).detach())
        ll = stats.norm.logpdf(d[mask > 0.5], x.numpy()[mask > 0.5], sigma).sum()
        vals.append(float(pot(y.reshape(1, -1))) + (lp - ladj) + ll)
    assert np.ptp(vals) < 1e-6
    np.testing.assert_allclose(pot.to_map(pot.from_map(torch.as_tensor(I))).numpy(), I, rtol=1e-10)


def test_nuts_pipeline_recovers_the_gaussian_posterior():
    # MAP -> block/diagonal scaling -> batched NUTS on a Gaussian-prior map potential must sample the
    # dense Wiener posterior: with ~1000+ effective draws the posterior-mean error per pixel has sd
    # std/sqrt(ESS); max |z| over 36 pixels < 5; posterior sds within 15 % (4 chains x 300 draws).
    n, sigma = 6, 0.05
    _, mask, d = _problem(n, seed=19)
    mask[:2, :3] = 0.0
    S = dust_toy.intensity_spectrum(n)
    # the packaged model with its Gaussian prior (I = 1 + s, s ~ GRF(S_I)), sampled in s
    pot = dc.ModelPotential(
        dust_inpainting.model,
        torch.as_tensor(d),
        torch.as_tensor(mask),
        sigma,
        lambda I: (I - 1.0).reshape(*I.shape[:-2], -1),
        prior="gaussian",
        noise_sigma=sigma,
    )
    res = dc.sample_posterior(
        pot, pot.from_map(torch.as_tensor(d)), chains=4, warmup=300, samples=300, seed=0
    )
    C = _dense_circulant(S)
    W = np.diag(mask.ravel() / sigma**2)
    cov = np.linalg.inv(np.linalg.inv(C) + W)
    mean = 1.0 + cov @ (W @ (d.ravel() - 1.0))
    x = res["maps"].reshape(-1, n * n)
    sd = np.sqrt(np.diag(cov))
    ess = dc.convergence(res["maps"])["ess_bulk_min"]
    assert ess > 300
    assert np.max(np.abs(x.mean(0) - mean) / (sd / np.sqrt(ess))) < 5.0
    np.testing.assert_allclose(x.std(0), sd, rtol=0.15)


# -- metrics -----------------------------------------------------------------------------------------
def test_masked_metrics_against_loops():
    rng = np.random.default_rng(1)
    n, S = 6, 200
    samples = rng.normal(size=(S, n, n)) * 0.5 + 1.0
    truth = rng.normal(size=(n, n)) * 0.5 + 1.0
    mask = (rng.random((n, n)) > 0.4).astype(float)
    mean = samples.mean(0)
    hole = [(i, j) for i in range(n) for j in range(n) if mask[i, j] == 0]
    mse = sum((mean[i, j] - truth[i, j]) ** 2 for i, j in hole) / len(hole)
    assert dc.masked_mse(mean, truth, mask) == pytest.approx(mse, rel=1e-12)
    inside = 0
    for i, j in hole:
        lo, hi = np.percentile(samples[:, i, j], [16, 84])
        inside += lo <= truth[i, j] <= hi
    assert dc.interval_coverage(samples, truth, mask) == pytest.approx(inside / len(hole))
    neg = sum(int((samples[:, i, j] < 0).sum()) for i, j in hole) / (S * len(hole))
    assert dc.negative_fraction(samples, mask) == pytest.approx(neg)


def test_band_fraction_against_loops():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(400, 3, 5))
    cur = rng.normal(0.3, 1.0, size=(50, 3, 5))
    inside = total = mean_in = 0
    for a in range(3):
        for t in range(5):
            lo, hi = np.percentile(ref[:, a, t], [2.5, 97.5])
            inside += int(((cur[:, a, t] >= lo) & (cur[:, a, t] <= hi)).sum())
            total += cur.shape[0]
            mean_in += lo <= cur[:, a, t].mean() <= hi
    out = dc.band_fraction(cur, ref)
    assert out["inside"] == pytest.approx(inside / total)
    assert out["mean_inside"] == pytest.approx(mean_in / 15)


def test_minkowski_curves_v0_is_the_area_fraction():
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(4, 16, 16))
    thr = [-1.0, 0.0, 0.5]
    curves = dc.minkowski_curves(maps, thr)
    assert curves.shape == (4, 3, 3)
    np.testing.assert_allclose(curves[:, 0], [[np.mean(m > t) for t in thr] for m in maps])
    # V1, V2: bayessky.stats.minkowski_functionals (checked against closed forms in test_stats.py)
    # called one map and one threshold at a time on the periodic pixel grid, so a swapped V1/V2,
    # transposed (map, threshold) axes or a non-periodic boundary would show
    for s, m in enumerate(maps):
        for t, level in enumerate(thr):
            _, v1, v2 = minkowski_functionals(m, [level], periodic=True)
            assert curves[s, 1, t] == pytest.approx(float(v1[0]), rel=1e-12, abs=1e-15)
            assert curves[s, 2, t] == pytest.approx(float(v2[0]), rel=1e-12, abs=1e-15)


def test_masked_peak_profile_stacks_the_masked_peaks():
    # two Gaussian blobs of amplitudes 1 and 3; only the first sits in a hole, so the stack is its
    # cut-out and the profile its azimuthal mean, computed here by a loop over pixels
    n, size = 40, 11
    yy, xx = np.mgrid[:n, :n]
    img = np.exp(-((yy - 12) ** 2 + (xx - 14) ** 2) / 8.0) + 3 * np.exp(
        -((yy - 28) ** 2 + (xx - 27) ** 2) / 8.0
    )
    mask = np.ones((n, n))
    mask[10:15, 12:17] = 0
    stack, r, prof, n_peaks = dc.masked_peak_profile(img[None], mask, size=size)
    assert n_peaks == 1
    np.testing.assert_allclose(stack, img[12 - 5 : 12 + 6, 14 - 5 : 14 + 6])
    ry, rx = np.mgrid[:size, :size] - size // 2
    dist = np.hypot(ry, rx)
    for b in range(3):
        sel = (dist >= b - 0.5) & (dist < b + 0.5)
        assert prof[b] == pytest.approx(stack[sel].mean())


def test_map_of_a_bright_map_does_not_step_into_nan():
    """The learned-prior MAP on the brightest map of the survey benchmark (max I 8.3, strip mask):
    torch's L-BFGS line search extrapolated to a point with loss 8e20 and turned every
    parameter into NaN (the model then refused a NaN ``loc``). With the restart from the best
    finite point the MAP converges, and it fits the data where observed: every observed pixel
    within 5 noise sigma, the finite estimate positive everywhere."""
    from bayessky import infer

    maps = dust_toy.sample(6, size=64, seed=2)
    data = maps + 0.05 * np.random.default_rng(3).normal(size=maps.shape)
    mask = np.ones((64, 64))
    mask[:, 16:24] = 0.0
    d, m = torch.as_tensor(data[2], dtype=torch.float32), torch.as_tensor(mask, dtype=torch.float32)
    idata = infer.map(dust_inpainting.model, d, mask=m, noise_sigma=0.05, steps=200, seed=2,
                      progress_bar=False)
    est = idata.posterior["I"].values[0, 0]
    loss = idata.optimization["loss"].values
    assert np.isfinite(est).all() and (est > 0).all()
    assert np.isfinite(loss).all() and loss[-1] == loss.min() and loss[-1] < loss[0]
    resid = np.abs(est - data[2])[mask > 0]
    assert resid.max() < 5 * 0.05, resid.max()
