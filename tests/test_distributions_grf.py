"""GaussianRandomField against a dense multivariate normal built independently with loops."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from _dense import dense_covariance
from _errors import refused
from _gof import nn_gof

from bayessky.distributions.grf import GaussianRandomField
from bayessky.sky import FlatGeometry


def random_symmetric_spectrum(ny, nx, rng, batch=()):
    """Positive S with S(k) = S(-k), symmetrised by explicit index arithmetic."""
    r = rng.uniform(0.2, 3.0, size=(*batch, ny, nx))
    s = np.empty_like(r)
    for i in range(ny):
        for j in range(nx):
            s[..., i, j] = 0.5 * (r[..., i, j] + r[..., (-i) % ny, (-j) % nx])
    return s


@pytest.mark.parametrize("shape", [(4, 4), (8, 8), (4, 6), (5, 3)])
def test_log_prob_matches_dense_mvn(shape):
    rng = np.random.default_rng(1)
    s = random_symmetric_spectrum(*shape, rng)
    c = dense_covariance(s)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(c.shape[0], dtype=torch.float64),
                                                 covariance_matrix=torch.as_tensor(c))
    x = torch.as_tensor(rng.normal(size=(7, *shape)) * 1.5)
    grf = GaussianRandomField(torch.as_tensor(s))
    lp = grf.log_prob(x)
    ref = mvn.log_prob(x.reshape(7, -1))
    # exact identity, float64 round-off only
    assert torch.allclose(lp, ref, atol=1e-5, rtol=0)
    assert abs(float(grf.entropy()) - float(mvn.entropy())) < 1e-8


def test_sample_covariance_matches_dense():
    rng = np.random.default_rng(2)
    s = random_symmetric_spectrum(4, 6, rng)
    c = dense_covariance(s)
    torch.manual_seed(0)
    n = 40000
    x = GaussianRandomField(torch.as_tensor(s)).sample((n,)).reshape(n, -1).numpy()
    emp = x.T @ x / n  # zero-mean field: no mean subtraction
    # Var(emp_ij) = (C_ii C_jj + C_ij^2) / n for Gaussian data; 5 sigma over 300 entries.
    sd = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c**2) / n)
    z = np.abs(emp - c) / sd
    assert z.max() < 5.0, z.max()


def test_rsample_is_the_dataset_recipe():
    """rsample = real(ifft2(fft2(w) sqrt(S))) with w the torch.randn draw (the hi-toy-v1 sampling recipe)."""
    rng = np.random.default_rng(3)
    s = random_symmetric_spectrum(6, 6, rng)
    torch.manual_seed(5)
    x = GaussianRandomField(torch.as_tensor(s)).rsample((2,)).numpy()
    torch.manual_seed(5)
    w = torch.randn(2, 6, 6, dtype=torch.float64).numpy()
    ref = np.real(np.fft.ifft2(np.fft.fft2(w) * np.sqrt(s)))
    assert np.abs(x - ref).max() < 1e-12


def test_batch_expand_and_shapes():
    rng = np.random.default_rng(4)
    s = torch.as_tensor(random_symmetric_spectrum(4, 4, rng, batch=(2, 3)))
    grf = GaussianRandomField(s)
    assert grf.batch_shape == (2, 3) and grf.event_shape == (4, 4)
    x = grf.rsample((5,))
    assert x.shape == (5, 2, 3, 4, 4)
    lp = grf.log_prob(x)
    assert lp.shape == (5, 2, 3)
    # each batch member equals its own dense MVN
    c = dense_covariance(s[1, 2].numpy())
    mvn = torch.distributions.MultivariateNormal(torch.zeros(16, dtype=torch.float64),
                                                 torch.as_tensor(c))
    assert torch.allclose(lp[:, 1, 2], mvn.log_prob(x[:, 1, 2].reshape(5, 16)), atol=1e-8)
    e = grf.expand((7, 2, 3))
    assert e.batch_shape == (7, 2, 3) and e.sample().shape == (7, 2, 3, 4, 4)
    assert torch.allclose(e.log_prob(x[0]), lp[0].expand(7, 2, 3))
    # broadcasting a single map against the batch
    assert grf.log_prob(x[0, 0, 0]).shape == (2, 3)
    assert grf.mean.shape == (2, 3, 4, 4) and torch.all(grf.mean == 0)
    assert torch.allclose(grf.variance[1, 2, 0, 0], torch.tensor(np.diag(c).mean(), dtype=torch.float64))
    assert grf.support.event_dim == 2


def test_pyro_site_in_plate_and_gof():
    rng = np.random.default_rng(6)
    s = torch.as_tensor(random_symmetric_spectrum(2, 2, rng))
    grf = GaussianRandomField(s)
    data = grf.sample((10,))

    def model():
        with pyro.plate("maps", 10):
            pyro.sample("x", grf, obs=data)

    tr = pyro.poutine.trace(model).get_trace()
    mvn = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64),
                                                 torch.as_tensor(dense_covariance(s.numpy())))
    assert abs(float(tr.log_prob_sum()) - float(mvn.log_prob(data.reshape(10, 4)).sum())) < 1e-8
    # Pyro's nearest-neighbour goodness-of-fit statistic of samples against their own log_prob
    # (2x2 -> 4-D), p-value from scipy: Pyro's chi2sf gives ~1 for the control below
    torch.manual_seed(1)
    x = grf.sample((20000,))
    gof = nn_gof(x, grf.log_prob(x))
    assert gof > 1e-3, gof
    # negative control: draws with 1.3 x the power, scored by grf's density (measured p ~ 1e-39
    # over 8 seeds, where Pyro's own p-value stays above 0.95)
    torch.manual_seed(1)
    x = GaussianRandomField(1.3 * s).sample((20000,))
    wrong = nn_gof(x, grf.log_prob(x))
    assert wrong < 1e-20, wrong


def test_gradient_wrt_spectrum_finite_differences():
    rng = np.random.default_rng(7)
    s0 = random_symmetric_spectrum(4, 4, rng)
    x = torch.as_tensor(rng.normal(size=(3, 4, 4)))
    s = torch.as_tensor(s0).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: GaussianRandomField(t, validate_args=False).log_prob(x),
                                    (s,), eps=1e-6, atol=1e-6)
    # directional derivative along a symmetric perturbation vs the dense MVN by central differences
    d = random_symmetric_spectrum(4, 4, rng) - 1.0
    lp = GaussianRandomField(s).log_prob(x).sum()
    (g,) = torch.autograd.grad(lp, s)
    auto = float((g * torch.as_tensor(d)).sum())

    def dense_lp(t):
        c = torch.as_tensor(dense_covariance(s0 + t * d))
        return float(torch.distributions.MultivariateNormal(torch.zeros(16, dtype=torch.float64), c)
                     .log_prob(x.reshape(3, 16)).sum())

    h = 1e-5
    fd = (dense_lp(h) - dense_lp(-h)) / (2 * h)
    assert abs(auto - fd) < 1e-5 * max(1.0, abs(fd))


def test_rsample_gradient_reaches_spectrum():
    """d x / d S for fixed noise: x = irfft(W sqrt(S)), so d(sum x^2)/dS_k = |W_k|^2 / N (up to pairing)."""
    s = torch.full((4, 4), 2.0, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(0)
    x = GaussianRandomField(s).rsample()
    # with constant S = 2, x = sqrt(2) w, so sum x^2 = 2 sum w^2 and the total derivative along
    # a uniform change of S is sum w^2 = sum x^2 / 2
    (g,) = torch.autograd.grad((x**2).sum(), s)
    assert abs(float(g.sum()) - float((x.detach() ** 2).sum() / 2.0)) < 1e-10


def test_from_cl_and_geometry():
    geo = FlatGeometry((4, 6), 3.0, unit="arcmin")

    def cl(ell):
        return 1e-4 / (1.0 + (ell / 3000.0) ** 2)

    grf = GaussianRandomField.from_cl(cl, geo)
    ky = 2 * np.pi * np.fft.fftfreq(4, d=geo.dx)[:, None]
    kx = 2 * np.pi * np.fft.fftfreq(6, d=geo.dx)[None, :]
    ref = cl(np.sqrt(kx**2 + ky**2)) / geo.dx**2
    assert np.allclose(grf.spectrum.numpy(), ref, rtol=1e-12)
    # tabulated at integer ell (CAMB layout) -> linear interpolation
    ells = np.arange(20000)
    grf2 = GaussianRandomField.from_cl(cl(ells.astype(float)), geo)
    assert np.allclose(grf2.spectrum.numpy(), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="geometry"):
        GaussianRandomField(torch.ones(4, 4), geometry=geo)


def test_validation_and_dtype():
    with pytest.raises(ValueError, match="S\\(k\\) = S\\(-k\\)"):
        s = torch.ones(4, 4)
        s[0, 1] = 3.0
        GaussianRandomField(s, validate_args=True)
    with pytest.raises(ValueError, match="spectrum"):
        GaussianRandomField(-torch.ones(4, 4), validate_args=True)
    with pytest.raises(ValueError, match="spectrum"):
        GaussianRandomField(torch.ones(4), validate_args=True)
    grf = GaussianRandomField(torch.ones(4, 4, dtype=torch.float32))
    x = grf.sample((2,))
    assert x.dtype == torch.float32 and grf.log_prob(x).dtype == torch.float32
    # white field of unit variance: log_prob is the iid standard normal density
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum((-2, -1))
    assert torch.allclose(grf.log_prob(x), ref, atol=1e-4)
    assert isinstance(grf, dist.TorchDistribution)
    assert math.isclose(float(grf.variance[0, 0]), 1.0)


# -- boundary checks: one-line errors that name the argument ----------------------------------
@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0.0, -1.0])
def test_bad_spectrum_refused_in_one_line(bad):
    s = torch.ones(4, 4, dtype=torch.float64)
    s[0, 0] = bad  # S(0) is its own mirror: the symmetry check cannot catch it first
    msg = refused(ValueError, "spectrum", lambda: GaussianRandomField(s, validate_args=True))
    assert ("inf" in msg) if bad == float("inf") else True
    # the default with validation on gives the same one-liner, not torch's tensor dump
    with pyro.validation_enabled(True):
        refused(ValueError, "spectrum", lambda: GaussianRandomField(s))
    # validate_args=False still skips every O(map) check
    GaussianRandomField(s, validate_args=False)


def test_log_prob_value_conversion_and_checks():
    grf = GaussianRandomField(torch.ones(4, 4, dtype=torch.float64))
    x = np.zeros((4, 4))
    assert torch.allclose(grf.log_prob(x), grf.log_prob(torch.zeros(4, 4, dtype=torch.float64)))
    assert torch.isfinite(grf.log_prob(x.tolist()))
    refused(TypeError, "value", lambda: grf.log_prob("x"))
    refused(ValueError, "value", lambda: grf.log_prob(torch.zeros(4, 5)))
    refused(ValueError, "value", lambda: grf.log_prob(torch.full((4, 4), float("nan"))))
    batched = GaussianRandomField(torch.ones(3, 4, 4))
    refused(ValueError, "value", lambda: batched.log_prob(torch.zeros(2, 4, 4)))


def test_from_cl_arguments_checked():
    geo = FlatGeometry(8, 1.0, unit="pixel")
    refused(TypeError, "geometry", lambda: GaussianRandomField.from_cl(np.ones(10), None))
    refused(ValueError, "cl", lambda: GaussianRandomField.from_cl(np.ones(0), geo))
    refused(ValueError, "cl", lambda: GaussianRandomField.from_cl(np.full(100, np.nan), geo))
    refused(ValueError, "cl", lambda: GaussianRandomField.from_cl(lambda k: k * float("nan"), geo))
