"""dust-toy-v1 against an independent numpy implementation of the dust-toy-v1
specification in bayessky.families.dust_toy's docstring."""

import math

import numpy as np
import pyro
import pytest
import torch
from _dense import dense_covariance
from scipy import stats

from bayessky.families import dust_toy


def ref_spectrum(n):
    s = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            ky = i if i < (n + 1) // 2 else i - n   # fftfreq(n) * n, written out
            kx = j if j < (n + 1) // 2 else j - n
            s[i, j] = (kx * kx + ky * ky + 4.0) ** -1.4
    return s / s.mean()


@pytest.mark.parametrize("n", [7, 16, 64])
def test_spectrum(n):
    s = dust_toy.spectrum(n)
    assert np.allclose(s, ref_spectrum(n), rtol=1e-12)
    assert abs(s.mean() - 1.0) < 1e-12


def test_sample_recipe_and_intensity():
    I, g = dust_toy.sample(3, size=16, seed=4, return_g=True)
    w = np.random.default_rng(4).standard_normal((3, 16, 16))
    gref = np.real(np.fft.ifft2(np.fft.fft2(w) * np.sqrt(ref_spectrum(16))))
    assert np.abs(g - gref).max() < 1e-12
    assert np.allclose(I, np.exp(0.8 * gref - 0.32), rtol=1e-12)
    assert np.array_equal(dust_toy.sample(3, size=16, seed=4), I)
    a = dust_toy.sample(2, size=8, seed=torch.Generator().manual_seed(1))
    b = dust_toy.sample(2, size=8, seed=torch.Generator().manual_seed(1))
    assert isinstance(a, torch.Tensor) and torch.equal(a, b)


def test_intensity_moments():
    """E[I] = exp(-0.32 + 0.64/2) = 1 and Var[I] = exp(0.64) - 1 (unit pixel variance of g)."""
    I, g = dust_toy.sample(400, size=32, seed=0, return_g=True)
    # pixel variance of g: mean S_g = 1; per-map means are independent -> standard error from them
    v = (g**2).mean(axis=(1, 2))
    assert abs(v.mean() - 1.0) < 5 * v.std() / np.sqrt(len(v))
    mi = I.mean(axis=(1, 2))
    assert abs(mi.mean() - 1.0) < 5 * mi.std() / np.sqrt(len(mi))
    vi = ((I - 1.0) ** 2).mean(axis=(1, 2))
    assert abs(vi.mean() - (math.exp(0.64) - 1)) < 5 * vi.std() / np.sqrt(len(vi))
    # one-point law: ln I = 0.8 g - 0.32 ~ N(-0.32, 0.8^2); one pixel per map keeps draws independent
    assert stats.kstest(np.log(I[:, 5, 7]), stats.norm(-0.32, 0.8).cdf).pvalue > 1e-3


def test_masks():
    m = dust_toy.point_source_mask(64, seed=3)
    assert m.shape == (64, 64) and set(np.unique(m)) <= {0.0, 1.0}
    masked = 1 - m.mean()
    # holes are added until >= 10 %; the last disc adds at most pi 5^2 / 64^2 = 1.9 %
    assert 0.10 <= masked <= 0.10 + math.pi * 25 / 4096 + 1e-12
    assert np.array_equal(m, dust_toy.point_source_mask(64, seed=3))
    assert not np.array_equal(m, dust_toy.point_source_mask(64, seed=4))
    # every hole is a disc of radius <= 5: each masked pixel has an unmasked pixel within 5.x px
    ys, xs = np.nonzero(m == 0)
    oy, ox = np.nonzero(m == 1)
    for y, x in zip(ys[::17], xs[::17]):
        dy = (oy - y + 32) % 64 - 32
        dx = (ox - x + 32) % 64 - 32
        assert np.sqrt(dy * dy + dx * dx).min() <= 5 + 1.5
    s = dust_toy.strip_mask(64, seed=5)
    cols = np.nonzero((s == 0).all(axis=0))[0]
    assert len(cols) == 6 and (s == 0).sum() == 6 * 64
    # the 6 columns are contiguous on the torus
    assert any(set(cols) == {(p + i) % 64 for i in range(6)} for p in range(64))
    assert np.array_equal(s, dust_toy.strip_mask(64, seed=5))
    h = dust_toy.strip_mask(32, seed=1, width=4, orientation="horizontal")
    assert (h == 0).all(axis=1).sum() == 4


def test_observe_noise_level():
    I = dust_toy.sample(4, size=32, seed=1)
    m = dust_toy.point_source_mask(32, seed=2)
    d = dust_toy.observe(I, m, seed=9)
    assert np.all(d[:, m == 0] == 0)
    r = (d - I)[:, m == 1] / 0.05
    n = r.size
    # sum r^2 ~ chi2_n
    assert stats.chi2.ppf(1e-4, n) < (r**2).sum() < stats.chi2.ppf(1 - 1e-4, n)
    assert abs(r.mean()) < 5 / math.sqrt(n)
    ref = m * (I + 0.05 * np.random.default_rng(9).standard_normal(I.shape))
    assert np.allclose(d, ref, rtol=1e-12)
    dt = dust_toy.observe(torch.as_tensor(I), torch.as_tensor(m), seed=9)
    assert isinstance(dt, torch.Tensor) and np.allclose(dt.numpy(), d)
    with pytest.raises(ValueError, match="mask"):
        dust_toy.observe(I, 2 * m)


def test_log_densities_vs_dense():
    I, g = dust_toy.sample(2, size=6, seed=7, return_g=True)
    mvn = stats.multivariate_normal(np.zeros(36), dense_covariance(ref_spectrum(6)))
    ref_g = mvn.logpdf(g.reshape(2, 36))
    assert np.allclose(dust_toy.log_prior_g(g), ref_g, atol=1e-8)
    # change of variables I -> g: |dg/dI| = 1 / (0.8 I)
    ref_I = ref_g - np.log(0.8 * I).sum(axis=(1, 2))
    assert np.allclose(dust_toy.log_density(I), ref_I, atol=1e-8)
    assert np.allclose(dust_toy.log_density(torch.as_tensor(I)).numpy(), ref_I, atol=1e-8)


def test_pyro_model_joint_density():
    I, g = dust_toy.sample(1, size=6, seed=8, return_g=True)
    m = dust_toy.strip_mask(6, seed=0, width=2)
    d = dust_toy.observe(I[0], m, seed=1)
    cond = pyro.poutine.condition(dust_toy.model, data={"g": torch.as_tensor(g[0])})
    tr = pyro.poutine.trace(cond).get_trace(torch.as_tensor(d), torch.as_tensor(m))
    mvn = stats.multivariate_normal(np.zeros(36), dense_covariance(ref_spectrum(6)))
    obs = m == 1
    ref = mvn.logpdf(g[0].ravel()) + stats.norm.logpdf(d[obs], I[0][obs], 0.05).sum()
    assert abs(float(tr.log_prob_sum()) - ref) < 1e-8
    assert np.allclose(tr.nodes["I"]["value"].numpy(), I[0])
