"""bayessky.infer.potential: the flat unconstrained potential of a Pyro model, against the model's
own log density (Pyro trace + the log-Jacobian of exp written out) and central finite differences."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import bayessky.infer as bi


def _model(data):
    s = pyro.sample("s", dist.LogNormal(0.0, 0.5))  # positive support: z = log s
    mu = pyro.sample("mu", dist.Normal(torch.zeros(3, dtype=data.dtype), 1.0).to_event(1))
    pyro.deterministic("twice", 2 * mu)
    pyro.sample("d", dist.Normal(mu, s).to_event(1), obs=data)


def _log_joint(values, data) -> float:
    tr = pyro.poutine.trace(pyro.poutine.condition(_model, values)).get_trace(data)
    return float(tr.log_prob_sum())


@pytest.fixture
def problem():
    data = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64)
    return bi.potential(_model, data), data


def test_potential_is_minus_log_joint_minus_log_jacobian(problem):
    pot, data = problem
    assert pot.dim == 4 and pot.names == ["mu", "s"]
    z = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u = pot(z)
    for b in range(5):
        mu, log_s = z[b, :3], z[b, 3]
        ref = -(_log_joint({"mu": mu, "s": log_s.exp()}, data) + float(log_s))  # |ds/dz| = s
        assert float(u[b]) == pytest.approx(ref, rel=1e-10, abs=1e-10)
        lp = dist.LogNormal(0.0, 0.5).log_prob(log_s.exp()) + log_s + dist.Normal(0.0, 1.0).log_prob(mu).sum()
        assert float(pot.log_prior(z[b : b + 1])[0]) == pytest.approx(float(lp), rel=1e-10)


def test_gradient_matches_finite_differences(problem):
    pot, _ = problem
    z = torch.randn(1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(pot(x).sum(), x)
    h = 1e-5
    for i in range(4):
        e = torch.zeros_like(z)
        e[0, i] = h
        fd = (float(pot(z + e)[0]) - float(pot(z - e)[0])) / (2 * h)
        assert float(g[0, i]) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_sites_and_flatten_round_trip(problem):
    pot, _ = problem
    z = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    sites = pot.sites(z)
    np.testing.assert_allclose(sites["twice"], 2 * z[:, :3])
    np.testing.assert_allclose(sites["s"], z[:, 3].exp())
    np.testing.assert_allclose(pot.flatten(pot.constrain(z)), z, atol=1e-12)
    assert pot.initial.shape == (1, 4) and math.isfinite(float(pot(pot.initial)[0]))


def test_jit_potential_agrees(problem):
    _, data = problem
    pot = bi.potential(_model, data, jit=True)
    eager = bi.potential(_model, data)
    z = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(pot(z).detach(), eager(z).detach(), rtol=1e-12)
