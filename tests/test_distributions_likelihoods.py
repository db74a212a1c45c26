"""MapNormal against sums of scipy.stats.norm log-densities over observed pixels."""

import numpy as np
import pyro
import pytest
import torch
from scipy.stats import norm

from bayessky.distributions.likelihoods import MapNormal


def scipy_ref(d, s, sigma, mask):
    """sum over pixels with M > 0 of log N(d; M s, (M sigma)^2), per map."""
    d, s = np.broadcast_arrays(d, s)
    sigma = np.broadcast_to(sigma, d.shape)
    mask = np.broadcast_to(mask, d.shape)
    out = np.zeros(d.shape[:-2])
    for idx in np.ndindex(*d.shape[:-2]):
        for i in range(d.shape[-2]):
            for j in range(d.shape[-1]):
                m = mask[idx + (i, j)]
                if m > 0:
                    out[idx] += norm.logpdf(d[idx + (i, j)], m * s[idx + (i, j)], m * sigma[idx + (i, j)])
    return out


def test_white_noise_no_mask():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 5, 6))
    d = s + 0.3 * rng.normal(size=s.shape)
    lp = MapNormal(torch.as_tensor(s), 0.3).log_prob(torch.as_tensor(d))
    assert lp.shape == (3,)
    assert np.allclose(lp.numpy(), scipy_ref(d, s, 0.3, np.ones((5, 6))), atol=1e-9)


def test_inhomogeneous_masked_nan_fill():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(2, 6, 6))
    sigma = rng.uniform(0.1, 0.5, size=(6, 6))
    mask = (rng.uniform(size=(6, 6)) > 0.3).astype(float)
    d = mask * (s + sigma * rng.normal(size=s.shape))
    ref = scipy_ref(d, s, sigma, mask)
    lik = MapNormal(torch.as_tensor(s), torch.as_tensor(sigma), torch.as_tensor(mask))
    assert np.allclose(lik.log_prob(torch.as_tensor(d)).numpy(), ref, atol=1e-9)
    # masked pixels contribute nothing: NaN fill values and a zero sigma there are harmless
    d_nan = d.copy()
    d_nan[:, mask == 0] = np.nan
    sigma0 = sigma.copy()
    sigma0[mask == 0] = 0.0
    lik0 = MapNormal(torch.as_tensor(s), torch.as_tensor(sigma0), torch.as_tensor(mask))
    assert np.allclose(lik0.log_prob(torch.as_tensor(d_nan)).numpy(), ref, atol=1e-9)


def test_apodised_mask_and_batches():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(4, 1, 5, 5))       # batch (4, 1)
    mask = rng.uniform(0.0, 1.0, size=(3, 5, 5))  # batch (3,)
    mask[0, 0, 0] = 0.0
    d = rng.normal(size=(4, 3, 5, 5))
    lik = MapNormal(torch.as_tensor(s), 0.2, torch.as_tensor(mask))
    assert lik.batch_shape == (4, 3) and lik.event_shape == (5, 5)
    assert np.allclose(lik.log_prob(torch.as_tensor(d)).numpy(), scipy_ref(d, s, 0.2, mask), atol=1e-9)
    e = lik.expand((2, 4, 3))
    assert e.log_prob(torch.as_tensor(d)).shape == (2, 4, 3)


def test_samples_moments_and_gradient():
    torch.manual_seed(0)
    s = torch.linspace(-1, 1, 16, dtype=torch.float64).reshape(4, 4).requires_grad_(True)
    mask = torch.ones(4, 4, dtype=torch.float64)
    mask[0] = 0
    lik = MapNormal(s, 0.5, mask)
    x = lik.rsample((20000,)).detach()
    assert torch.all(x[:, 0] == 0)  # d = M (s + n) is zero where M = 0
    # sample mean within 5 standard errors (0.5 / sqrt(20000)) on observed pixels
    err = (x[:, 1:].mean(0) - s[1:].detach()).abs().max()
    assert float(err) < 5 * 0.5 / np.sqrt(20000)
    assert abs(float((x[:, 1:] - s[1:].detach()).std()) - 0.5) < 0.005  # sd of sd ~ 0.5/sqrt(2*240000) = 7e-4
    # gradient wrt loc: (d - s)/sigma^2 on observed pixels, 0 on masked ones
    d = torch.zeros(4, 4, dtype=torch.float64)
    (g,) = torch.autograd.grad(lik.log_prob(d), s)
    ref = (d - s.detach()) / 0.25
    ref[0] = 0
    assert torch.allclose(g, ref)


def test_validation_errors():
    s = torch.zeros(4, 4)
    with pytest.raises(ValueError, match="mask"):
        MapNormal(s, 1.0, torch.full((4, 4), 2.0), validate_args=True)
    with pytest.raises(ValueError, match="loc"):
        MapNormal(torch.full((4, 4), float("nan")), 1.0, validate_args=True)
    with pytest.raises(ValueError, match="sigma"):
        MapNormal(s, -1.0, validate_args=True)
    with pytest.raises(ValueError, match="sigma"):
        MapNormal(s, torch.ones(4))
    with pytest.raises(ValueError, match="sigma/mask"):
        MapNormal(s, torch.ones(3, 3))
    with pytest.raises(ValueError, match="loc"):
        MapNormal(torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match="value"):
        MapNormal(s, 1.0, torch.ones(4, 4), validate_args=True).log_prob(torch.full((4, 4), float("nan")))


def test_pyro_model_site():
    rng = np.random.default_rng(3)
    s = torch.as_tensor(rng.normal(size=(3, 4, 4)))
    d = torch.as_tensor(rng.normal(size=(3, 4, 4)))

    def model():
        with pyro.plate("maps", 3):
            pyro.sample("d", MapNormal(s, 0.7), obs=d)

    tr = pyro.poutine.trace(model).get_trace()
    assert np.isclose(float(tr.log_prob_sum()), scipy_ref(d.numpy(), s.numpy(), 0.7, 1.0).sum())


def test_mask_checked_with_validation_off():
    # Pyro's MCMC and bayessky.infer trace models with validation off: the mask is still checked
    s = torch.zeros(4, 4)
    nan = torch.ones(4, 4)
    nan[1, 1] = float("nan")
    with pyro.validation_enabled(False):
        bad = ((nan, "NaN"), (torch.full((4, 4), 2.0), "[0, 1]"), (-torch.ones(4, 4), "[0, 1]"))
        for mask, needle in bad:
            with pytest.raises(ValueError) as err:
                MapNormal(s, 1.0, mask)
            msg = str(err.value)
            assert msg.startswith("mask:") and needle in msg and "\n" not in msg, msg
    with pytest.raises(ValueError, match="^mask:"):
        MapNormal(s, 1.0, nan, validate_args=False)


@pytest.mark.parametrize("shape", [(1, 8), (8, 1), (), (4, 4), (8,), (3, 8, 7)])
@pytest.mark.parametrize("masked", [False, True])
def test_value_shape_must_match_the_map(shape, masked):
    # (1, 8), (8, 1) and scalars used to broadcast into a full-map log-density
    mask = torch.ones(8, 8) if masked else None
    lik = MapNormal(torch.zeros(8, 8), 0.1, mask, validate_args=False)
    with pytest.raises(ValueError) as err:
        lik.log_prob(torch.zeros(shape))
    msg = str(err.value)
    assert msg.startswith("value:") and "(8, 8)" in msg and "\n" not in msg, msg
    assert lik.log_prob(torch.zeros(3, 8, 8)).shape == (3,)  # a stack of maps still broadcasts
