"""hi-toy-v1 against an independent plain-numpy implementation of the hi-toy-v1
specification in bayessky.families.hi_toy's docstring."""

import math

import numpy as np
import pytest
import torch
from _dense import dense_covariance
from scipy import stats

from bayessky.families import hi_toy

# ---- independent reference, written from that specification with explicit loops ----------------------


def ref_transfer(q):
    if q == 0:
        return 1.0
    return (math.log(1 + 2.34 * q) / (2.34 * q)
            * (1 + 3.89 * q + (16.1 * q) ** 2 + (5.46 * q) ** 3 + (6.71 * q) ** 4) ** -0.25)


def ref_spectrum(n, om, s8, box=25.0):
    k1 = 2 * np.pi * np.fft.fftfreq(n, box / n)
    kf = 2 * np.pi / box
    gamma = om * 0.6711
    shape = np.empty((n, n))
    smooth = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            k = math.hypot(k1[i], k1[j])
            shape[i, j] = (k / kf) * ref_transfer(k / gamma) ** 2
            smooth[i, j] = shape[i, j] * math.exp(-(k * 1.0) ** 2)
    return s8**2 * shape / smooth.mean() + 0.01


def ref_loglike(g, s):
    n2 = g.size
    xk = np.fft.fft2(g)
    return -0.5 * np.sum(np.abs(xk) ** 2 / (n2 * s)) - 0.5 * np.sum(np.log(2 * np.pi * s))


# ---- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,om,s8", [(8, 0.3, 0.8), (16, 0.1, 0.6), (16, 0.5, 1.0), (64, 0.23, 0.91)])
def test_spectrum_matches_reference(n, om, s8):
    s = hi_toy.spectrum(n, om, s8)
    assert isinstance(s, np.ndarray) and s.shape == (n, n)
    assert np.allclose(s, ref_spectrum(n, om, s8), rtol=1e-12, atol=0)


def test_spectrum_batching_types_and_box():
    om = np.array([0.2, 0.3, 0.4])
    s = hi_toy.spectrum(8, om[:, None], np.array([0.7, 0.9]))
    assert s.shape == (3, 2, 8, 8)
    assert np.allclose(s[2, 1], ref_spectrum(8, 0.4, 0.9), rtol=1e-12)
    st = hi_toy.spectrum(8, torch.tensor([0.2, 0.3], dtype=torch.float32), 0.8)
    assert isinstance(st, torch.Tensor) and st.dtype == torch.float32 and st.shape == (2, 8, 8)
    assert np.allclose(st[1].numpy(), ref_spectrum(8, 0.3, 0.8), rtol=1e-5)
    s50 = hi_toy.spectrum(8, 0.3, 0.8, box=50.0)
    assert np.allclose(s50, ref_spectrum(8, 0.3, 0.8, box=50.0), rtol=1e-12)


def test_transfer_at_zero_and_gradients():
    q = torch.tensor([0.0, 1e-8, 0.5, 3.0], dtype=torch.float64, requires_grad=True)
    t = hi_toy.bbks_transfer(q)
    assert np.allclose(t.detach().numpy(), [ref_transfer(float(v)) for v in q.detach()], rtol=1e-12)
    (g,) = torch.autograd.grad(t.sum(), q)
    assert torch.isfinite(g).all()
    # derivative at 0.5 vs central differences of the reference
    h = 1e-6
    assert abs(float(g[2]) - (ref_transfer(0.5 + h) - ref_transfer(0.5 - h)) / (2 * h)) < 1e-7
    # spectrum gradient wrt (omega_m, sigma_8) vs finite differences of the reference spectrum
    om = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    s8 = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    wts = torch.as_tensor(np.random.default_rng(0).normal(size=(8, 8)))
    (gom, gs8) = torch.autograd.grad((hi_toy.spectrum(8, om, s8) * wts).sum(), (om, s8))
    f = lambda a, b: float((ref_spectrum(8, a, b) * wts.numpy()).sum())  # noqa: E731
    h = 1e-6
    assert abs(float(gom) - (f(0.3 + h, 0.8) - f(0.3 - h, 0.8)) / (2 * h)) < 1e-5 * max(1, abs(float(gom)))
    assert abs(float(gs8) - (f(0.3, 0.8 + h) - f(0.3, 0.8 - h)) / (2 * h)) < 1e-5 * max(1, abs(float(gs8)))


def test_sample_is_the_recipe():
    om = np.array([0.15, 0.3, 0.45])
    s8 = np.array([0.65, 0.8, 0.95])
    maps = hi_toy.sample(3, om, s8, size=16, seed=11)
    w = np.random.default_rng(11).standard_normal((3, 16, 16))
    for i in range(3):
        g = np.real(np.fft.ifft2(np.fft.fft2(w[i]) * np.sqrt(ref_spectrum(16, om[i], s8[i]))))
        assert np.allclose(maps[i], 10 ** (8 + g), rtol=1e-10)
    # torch parameters: same noise (numpy RNG from the int seed), torch out
    mt = hi_toy.sample(3, torch.as_tensor(om), torch.as_tensor(s8), size=16, seed=11)
    assert isinstance(mt, torch.Tensor) and np.allclose(mt.numpy(), maps, rtol=1e-10)
    # scalar parameters broadcast to all maps; a torch.Generator reproduces itself
    a = hi_toy.sample(2, 0.3, 0.8, size=8, seed=torch.Generator().manual_seed(3))
    b = hi_toy.sample(2, 0.3, 0.8, size=8, seed=torch.Generator().manual_seed(3))
    assert a.shape == (2, 8, 8) and torch.equal(a, b)
    with pytest.raises(ValueError, match="omega_m"):
        hi_toy.sample(3, np.array([0.2, 0.3]), 0.8, size=8)


def test_log_likelihood_matches_dense_mvn():
    rng = np.random.default_rng(5)
    maps = hi_toy.sample(3, 0.3, 0.8, size=8, seed=rng)
    g = np.log10(maps) - 8
    params = [(0.2, 0.7), (0.3, 0.8), (0.45, 0.95), (0.12, 0.61)]
    om = np.array([p[0] for p in params])
    s8 = np.array([p[1] for p in params])
    ll = hi_toy.log_likelihood(maps, om, s8)
    assert isinstance(ll, np.ndarray) and ll.shape == (4, 3)
    for p, (a, b) in enumerate(params):
        mvn = stats.multivariate_normal(np.zeros(64), dense_covariance(ref_spectrum(8, a, b)))
        ref = mvn.logpdf(g.reshape(3, 64))
        assert np.abs(ll[p] - ref).max() < 1e-6
        assert abs(ll[p, 0] - ref_loglike(g[0], ref_spectrum(8, a, b))) < 1e-8


def test_log_likelihood_broadcasting_rule():
    maps = hi_toy.sample(5, 0.3, 0.8, size=8, seed=1)
    om = np.linspace(0.15, 0.45, 4)
    s8 = np.linspace(0.65, 0.95, 4)
    ref = np.array([[ref_loglike(np.log10(m) - 8, ref_spectrum(8, a, b)) for m in maps]
                    for a, b in zip(om, s8)])
    assert np.allclose(hi_toy.log_likelihood(maps, om, s8), ref, atol=1e-8)              # (P,) -> (P, M)
    assert np.allclose(hi_toy.log_likelihood(maps, om[:, None], s8[:, None]), ref, atol=1e-8)  # (P,1)
    assert hi_toy.log_likelihood(maps, 0.3, 0.8).shape == (5,)                         # () -> (M,)
    assert hi_toy.log_likelihood(maps[0], om, s8).shape == (4,)                        # single map
    grid = hi_toy.log_likelihood(maps, om[:, None], s8[None, :3])                      # (4,3) -> (4,3,5)
    assert grid.shape == (4, 3, 5)
    assert np.isclose(grid[2, 1, 4], ref_loglike(np.log10(maps[4]) - 8, ref_spectrum(8, om[2], s8[1])))
    paired = hi_toy.log_likelihood(maps[:4], om, s8, paired=True)                      # (M,) with (M,)
    assert np.allclose(paired, np.diag(ref[:, :4]), atol=1e-8)
    with pytest.raises(ValueError, match="broadcast"):
        hi_toy.log_likelihood(maps, om, s8, paired=True)
    # torch in -> torch out, float32 maps
    lt = hi_toy.log_likelihood(torch.as_tensor(maps, dtype=torch.float32), torch.as_tensor(om),
                               torch.as_tensor(s8))
    assert isinstance(lt, torch.Tensor) and lt.shape == (4, 5)
    assert np.allclose(lt.numpy(), ref, rtol=1e-5)


def test_log_likelihood_gradient_finite_differences():
    maps = hi_toy.sample(2, 0.25, 0.75, size=16, seed=2)
    om = torch.tensor([0.22, 0.31], dtype=torch.float64, requires_grad=True)
    s8 = torch.tensor([0.71, 0.88], dtype=torch.float64, requires_grad=True)
    ll = hi_toy.log_likelihood(torch.as_tensor(maps), om, s8)
    gom, gs8 = torch.autograd.grad(ll.sum(), (om, s8))
    g = np.log10(maps) - 8

    def f(a, b):
        return sum(ref_loglike(gi, ref_spectrum(16, a, b)) for gi in g)

    h = 1e-6
    for i in range(2):
        a, b = float(om[i].detach()), float(s8[i].detach())
        fd_om = (f(a + h, b) - f(a - h, b)) / (2 * h)
        fd_s8 = (f(a, b + h) - f(a, b - h)) / (2 * h)
        assert abs(float(gom[i]) - fd_om) < 1e-4 * max(1.0, abs(fd_om))
        assert abs(float(gs8[i]) - fd_s8) < 1e-4 * max(1.0, abs(fd_s8))


def test_empirical_mode_variance_chi_square():
    n, m = 16, 300
    maps = hi_toy.sample(m, 0.35, 0.85, size=n, seed=7)
    xk = np.fft.fft2(np.log10(maps) - 8)
    s = ref_spectrum(n, 0.35, 0.85)
    r = np.abs(xk) ** 2 / (n * n * s)          # per map and mode, E = 1
    # self-conjugate modes (k = -k mod n) are real: r ~ chi2_1; the others r ~ chi2_2 / 2
    idx = np.arange(n)
    selfconj = ((-idx[:, None]) % n == idx[:, None]) & ((-idx[None, :]) % n == idx[None, :])
    alpha = 1e-3 / (n * n)  # Bonferroni over modes, two-sided
    for sc, dof in ((selfconj, m), (~selfconj, 2 * m)):
        t = r[:, sc].sum(0) * (1 if dof == m else 2)
        assert np.all(t > stats.chi2.ppf(alpha / 2, dof)) and np.all(t < stats.chi2.ppf(1 - alpha / 2, dof))
    # total quadratic form over all maps: g^T C^-1 g ~ chi2_{N^2} per map
    tot = r.sum()
    dof = m * n * n
    assert stats.chi2.ppf(1e-4, dof) < tot < stats.chi2.ppf(1 - 1e-4, dof)


def test_reference_figure_grid_posterior_std():
    """hi-toy-v1 reference figures: exact grid posterior std about 0.062 (Omega_m) and 0.049
    (sigma_8) at N = 64."""
    rng = np.random.default_rng(0)
    om, s8 = hi_toy.sample_prior(8, rng)
    maps = hi_toy.sample(8, om, s8, size=64, seed=rng)
    go, gs = np.linspace(0.1, 0.5, 40), np.linspace(0.6, 1.0, 40)
    ll = hi_toy.log_likelihood(maps, go[:, None], gs[None, :])  # (40, 40, 8)
    w = np.exp(ll - ll.max(axis=(0, 1)))
    w /= w.sum(axis=(0, 1))
    O, S = np.meshgrid(go, gs, indexing="ij")
    mo = np.einsum("ijm,ij->m", w, O)
    ms = np.einsum("ijm,ij->m", w, S)
    so = np.sqrt(np.einsum("ijm,ijm->m", w, (O[..., None] - mo) ** 2))
    ss = np.sqrt(np.einsum("ijm,ijm->m", w, (S[..., None] - ms) ** 2))
    # per-map std ranges 0.02-0.09 (30-map study); the mean of 8 is within ~0.01 of the reference
    assert 0.045 < so.mean() < 0.08, so.mean()
    assert 0.035 < ss.mean() < 0.065, ss.mean()
    # truths mostly inside +-3 posterior std
    assert np.mean(np.abs(mo - om) < 3 * so) >= 0.75 and np.mean(np.abs(ms - s8) < 3 * ss) >= 0.75


def test_prior_and_validation():
    assert hi_toy.VERSION == "hi-toy-v1"
    assert hi_toy.prior_bounds == {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0)}
    om, s8 = hi_toy.sample_prior(4000, seed=3)
    assert stats.kstest(om, stats.uniform(0.1, 0.4).cdf).pvalue > 1e-3
    assert stats.kstest(s8, stats.uniform(0.6, 0.4).cdf).pvalue > 1e-3
    p = hi_toy.prior()
    lp = float(p["Omega_m"].log_prob(torch.tensor(0.3, dtype=torch.float64)))
    assert lp == pytest.approx(-math.log(0.4))
    assert float(p["sigma_8"].high) == 1.0
    maps = hi_toy.sample(1, 0.3, 0.8, size=8, seed=0)
    with pytest.raises(ValueError, match="maps"):
        hi_toy.log_likelihood(-maps, 0.3, 0.8)
    with pytest.raises(ValueError, match="maps"):
        hi_toy.log_likelihood(maps[..., :7], 0.3, 0.8)
    with pytest.raises(ValueError, match="omega_m"):
        hi_toy.log_likelihood(maps, -0.3, 0.8)
    with pytest.raises(ValueError, match="n"):
        hi_toy.spectrum(1, 0.3, 0.8)
    # distribution(): the GRF of g gives the same log-likelihood
    d = hi_toy.distribution(torch.tensor([0.3, 0.4], dtype=torch.float64), 0.8, size=8)
    g = torch.as_tensor(np.log10(maps[0]) - 8)
    ref = [ref_loglike(g.numpy(), ref_spectrum(8, a, 0.8)) for a in (0.3, 0.4)]
    assert np.allclose(d.log_prob(g).numpy(), ref)


def test_log_likelihood_scalar_parameters_one_map_is_a_scalar():
    # one map, scalar parameters (a NUTS step) -> a 0-d result equal to the (1,)-parameter grid case
    m = hi_toy.sample(1, 0.3, 0.8, size=8, seed=5)[0]
    one = hi_toy.log_likelihood(m, 0.3, 0.8)
    grid = hi_toy.log_likelihood(m, np.array([0.3]), np.array([0.8]))
    assert np.shape(one) == () and grid.shape == (1,)
    np.testing.assert_allclose(one, grid[0], rtol=1e-12)


@pytest.mark.parametrize("s8", [-0.8, 0.0, float("nan"), float("inf")])
def test_sigma_8_must_be_positive_and_finite(s8):
    # S(k) depends on sigma_8^2: -0.8 used to give the likelihood of +0.8
    maps = hi_toy.sample(1, 0.3, 0.8, size=8, seed=0)
    for fn in (lambda: hi_toy.sample(1, 0.3, s8, size=8, seed=0),
               lambda: hi_toy.log_likelihood(maps, 0.3, s8),
               lambda: hi_toy.log_likelihood(maps, 0.3, torch.tensor([0.8, s8], dtype=torch.float64))):
        with pytest.raises(ValueError) as err:
            fn()
        assert str(err.value).startswith("sigma_8:") and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="^omega_m:"):
        hi_toy.sample(1, float("nan"), 0.8, size=8)


def test_exact_likelihood_grid_over_the_prior_box_is_finite():
    # the grid engine evaluates cell centres of the box, never <= 0: the new checks leave it alone
    maps = hi_toy.sample(2, 0.3, 0.8, size=8, seed=1)
    om = torch.linspace(0.1, 0.5, 9, dtype=torch.float64)
    s8 = torch.linspace(0.6, 1.0, 9, dtype=torch.float64)
    ll = hi_toy.log_likelihood(maps, om[:, None], s8[None, :])
    assert ll.shape == (9, 9, 2) and torch.isfinite(ll).all()


def test_old_physics_names_are_aliases_of_the_families():
    import bayessky.families as families
    import bayessky.physics as physics

    for name in ("hi_toy", "dust_toy", "blobs"):
        assert getattr(physics, name) is getattr(families, name)
    with pytest.raises(AttributeError):
        physics.no_such_family  # noqa: B018
