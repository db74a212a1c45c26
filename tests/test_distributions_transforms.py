"""Map transforms: inverses, per-pixel Jacobians against autograd / finite differences, configs."""

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
from pyro.distributions import Normal, TransformedDistribution

from bayessky.distributions.transforms import (
    Log10Transform,
    SignedLogTransform,
    StandardiseTransform,
    compose,
    parse_transform_names,
    transform_from_config,
    transform_to_config,
)

RNG = np.random.default_rng(0)
POS = torch.tensor(10 ** RNG.uniform(-3, 10, size=(4, 5, 6)))           # HI-like dynamic range
SIGNED = torch.tensor(RNG.standard_cauchy(size=(4, 5, 6)))              # heavy tails, both signs
MEAN = torch.tensor(RNG.normal(size=(5, 1)))          # per-row ("channel") parameters
STD = torch.tensor(RNG.uniform(0.2, 3.0, size=(5, 1)))

CASES = [
    (Log10Transform(), POS),
    (SignedLogTransform(0.7), SIGNED),
    (StandardiseTransform(MEAN, STD), SIGNED),
    (compose(Log10Transform(), StandardiseTransform(3.0, 2.5)), POS),
    (compose(SignedLogTransform(2.0), StandardiseTransform(MEAN, STD)), SIGNED),
]


def test_closed_forms():
    # independent references: numpy's log10 and the cosmikyu formula written out
    np.testing.assert_allclose(Log10Transform()(POS).numpy(), np.log10(POS.numpy()), rtol=1e-14)
    x = SIGNED.numpy()
    np.testing.assert_allclose(SignedLogTransform(0.7)(SIGNED).numpy(),
                               np.sign(x) * np.log(np.abs(x) / 0.7 + 1), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("t,x", CASES)
def test_inverse_round_trip(t, x):
    # float64: the round trip is exact to a few ulp of the (up to 1e10) values
    np.testing.assert_allclose(t.inv(t(x)).numpy(), x.numpy(), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("t,x", CASES)
def test_log_abs_det_jacobian_vs_autograd(t, x):
    # elementwise map: d(sum y)/dx_i = dy_i/dx_i, so log|grad| is the per-pixel log-Jacobian
    x = x.clone().requires_grad_(True)
    y = t(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    ladj = t.log_abs_det_jacobian(x, y).detach()
    assert ladj.shape == x.shape
    np.testing.assert_allclose(ladj.numpy(), grad.abs().log().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t,x", CASES)
def test_log_abs_det_jacobian_vs_finite_differences(t, x):
    # central differences with a relative step h = 1e-6 |x|: truncation ~h^2 f'''/f' ~ 1e-12,
    # rounding ~1e-16 / 1e-6 = 1e-10 relative in the derivative -> compare log-derivatives to 1e-7
    h = 1e-6 * x.abs().clamp_min(1e-3)
    fd = (t(x + h) - t(x - h)) / (2 * h)
    np.testing.assert_allclose(t.log_abs_det_jacobian(x, t(x)).numpy(), fd.abs().log().numpy(), atol=1e-7)


def test_lognormal_density_through_pyro():
    # y = standardise(log10 x) ~ N(0, 1)  <=>  x log-normal with s = ln10 * std, scale = 10^mean
    mean, std = 8.3, 0.45
    t = compose(Log10Transform(), StandardiseTransform(mean, std))
    dist = TransformedDistribution(Normal(torch.zeros(()).double(), 1.0), [t.inv])
    x = torch.tensor(10 ** RNG.normal(mean, std, size=50))
    ref = scipy.stats.lognorm.logpdf(x.numpy(), s=math.log(10) * std, scale=10**mean)
    np.testing.assert_allclose(dist.log_prob(x).numpy(), ref, rtol=1e-12)


def test_float32_and_shapes():
    t = compose(Log10Transform(), StandardiseTransform(MEAN, STD))
    x = POS.float()
    y = t(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert t.log_abs_det_jacobian(x, y).dtype == torch.float32


@pytest.mark.parametrize("t,x", CASES)
def test_config_round_trip(t, x):
    cfg = json.loads(json.dumps(transform_to_config(t)))  # must survive JSON
    t2 = transform_from_config(cfg)
    np.testing.assert_array_equal(t2(x).numpy(), t(x).numpy())
    assert transform_to_config(t2) == cfg


def test_fit_standardise_matches_numpy():
    data = RNG.normal(3.0, 2.0, size=(7, 2, 4, 4))
    t = StandardiseTransform.fit(data)
    assert t.to_config()["mean"] == pytest.approx(data.mean(), rel=1e-13)
    assert t.to_config()["std"] == pytest.approx(data.std(), rel=1e-13)
    per = StandardiseTransform.fit(data, dims=(0, 2, 3))
    np.testing.assert_allclose(per.mean.numpy().ravel(), data.mean(axis=(0, 2, 3)), rtol=1e-13)


def test_refusals_are_one_line():
    for bad, exc in [
        (lambda: SignedLogTransform(0.0), ValueError),
        (lambda: StandardiseTransform(0.0, -1.0), ValueError),
        (lambda: transform_from_config([{"name": "sqrt"}]), ValueError),
        (lambda: transform_from_config([{"name": "standardise", "mean": 1.0}]), ValueError),
        (lambda: parse_transform_names("log10,cube"), ValueError),
    ]:
        with pytest.raises(exc) as info:
            bad()
        assert "\n" not in str(info.value)
    assert parse_transform_names("log10, standardise") == ["log10", "standardise"]
    assert parse_transform_names("none") == []
