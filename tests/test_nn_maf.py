"""MAF / MapMAF against independent references.

References: the autoregressive structure read off dense autograd Jacobians, slogdet of the dense
Jacobian (log-determinants), scipy's normal log-density (change of variables), numerical
quadrature (normalisation in 1-D and 2-D), central finite differences (context gradients),
Pyro's goodness-of-fit test (samples against log_prob) and explicit loops (broadcasting).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _gof import nn_gof  # Pyro's statistic, scipy's p-value
from scipy import stats

from bayessky.nn import MAF, MapMAF
from bayessky.nn.maf import MADE

F64 = torch.float64


def randomize(module, scale=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=F64).to(p.dtype))
    return module


def dense_jacobian(fn, x):
    """d fn(x) / dx for one vector x, fn mapping (N, D) -> (N, D) sample by sample."""
    d = x.numel()
    xs = x.detach().reshape(1, -1).repeat(d, 1).requires_grad_(True)
    (jac,) = torch.autograd.grad(fn(xs).diagonal().sum(), xs)
    return jac


@pytest.mark.parametrize("features", [1, 2, 5])
def test_made_is_autoregressive(features):
    torch.manual_seed(0)
    degrees = torch.randperm(features) + 1
    made = randomize(MADE(features, 2, (16, 16), degrees).double())
    x, c = torch.randn(features, dtype=F64), torch.randn(1, 2, dtype=F64)
    for k in (0, 1):  # mu and alpha
        jac = dense_jacobian(lambda v, k=k: made(v, c.expand(len(v), -1))[k], x)
        allowed = degrees[None, :] < degrees[:, None]  # output i may see input j iff deg_j < deg_i
        assert torch.all(jac[~allowed] == 0)
        if features > 1:
            assert (jac[allowed].abs() > 0).float().mean() > 0.5  # and does see most of them


def _flows(dtype=F64, scale=0.3):
    torch.manual_seed(1)
    out = [(randomize(MAF(4, transforms=3, hidden=(16,)).to(dtype), scale), None),
           (randomize(MAF(4, context_dim=2, transforms=3, hidden=(16, 16), order="random",
                          context_low=[0.1, 0.6], context_high=[0.5, 1.0]).to(dtype), scale),
            torch.tensor([[0.2, 0.7], [0.4, 0.9], [0.3, 0.8]], dtype=dtype))]
    return out


def test_invertibility_float32_and_logdet_float64():
    for flow, c in _flows(torch.float32, 0.1):
        x = torch.randn(3, 4)
        u, _ = flow(x, c)
        assert (flow.inverse(u, c) - x).abs().max() < 1e-4
    for flow, c in _flows():
        x = torch.randn(3, 4, dtype=F64)
        u, ld = flow(x, c)
        torch.testing.assert_close(flow.inverse(u, c), x, rtol=0, atol=1e-10)
        lp = flow.log_prob(x, c)
        for i in range(3):
            ci = None if c is None else c[i:i + 1]
            jac = dense_jacobian(lambda v, ci=ci, f=flow: f(v, ci)[0], x[i])
            ref_ld = float(torch.linalg.slogdet(jac)[1])
            assert abs(float(ld[i].detach()) - ref_ld) < 1e-10 * max(1.0, abs(ref_ld))
            ref_lp = stats.norm.logpdf(u[i].detach().numpy()).sum() + ref_ld
            assert abs(float(lp[i].detach()) - ref_lp) < 1e-10 * max(1.0, abs(ref_lp))


def test_normalisation_by_quadrature():
    """exp(log_prob) integrates to 1 (1-D conditional MAF and 2-D MAF, trapezoid on a wide grid)."""
    torch.manual_seed(2)
    one = randomize(MAF(1, context_dim=1, transforms=2, hidden=(8,)).double(), 0.3)
    grid = torch.linspace(-30, 30, 20001, dtype=F64)
    for c in (-0.5, 0.7):
        p = one.log_prob(grid[:, None], torch.tensor([c], dtype=F64)).exp().detach().numpy()
        assert abs(np.trapezoid(p, grid.numpy()) - 1) < 1e-6
    vals = [one.log_prob(torch.zeros(1, 1, dtype=F64), torch.tensor([c], dtype=F64)) for c in (-0.5, 0.7)]
    assert abs(float((vals[0] - vals[1]).detach())) > 1e-3  # the context reaches a 1-D flow
    two = randomize(MAF(2, transforms=3, hidden=(16,)).double(), 0.3)
    g = torch.linspace(-25, 25, 801, dtype=F64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    p = two.log_prob(torch.stack([xx, yy], -1)).exp().detach().numpy()
    total = np.trapezoid(np.trapezoid(p, g.numpy(), axis=1), g.numpy())
    assert abs(total - 1) < 1e-3


def test_goodness_of_fit_2d():
    from pyro.distributions.testing.gof import auto_goodness_of_fit

    torch.manual_seed(3)
    flow = randomize(MAF(2, context_dim=1, transforms=3, hidden=(16,)).double(), 0.3)
    c = torch.tensor([0.5], dtype=F64)
    with torch.no_grad():
        x = flow.sample(4000, c, generator=torch.Generator().manual_seed(0))
        lp = flow.log_prob(x, c)
        wrong = flow.log_prob(x, torch.tensor([-0.5], dtype=F64))  # the other condition's density
    gauss = torch.distributions.MultivariateNormal(x.mean(0), torch.cov(x.T))
    assert auto_goodness_of_fit(x, lp.exp()) > 0.01 and nn_gof(x, lp) > 0.01
    assert nn_gof(x, wrong) < 0.01
    assert nn_gof(x, gauss.log_prob(x)) < 0.01  # the flow is not Gaussian


def test_context_gradients_match_finite_differences():
    flow, c = _flows()[1]
    x = torch.randn(3, 4, dtype=F64)
    c = c.clone().requires_grad_(True)
    w = torch.randn(3, 4, dtype=F64)

    def draw(cc):
        return (flow.sample(3, cc, generator=torch.Generator().manual_seed(5)) * w).sum()

    g_lp = torch.autograd.grad(flow.log_prob(x, c).sum(), c)[0]
    g_s = torch.autograd.grad(draw(c), c)[0]
    h = 1e-6
    for i in range(3):
        for j in range(2):
            e = torch.zeros_like(c)
            e[i, j] = h
            with torch.no_grad():
                fd = (flow.log_prob(x, c + e).sum() - flow.log_prob(x, c - e).sum()) / (2 * h)
                fd_s = (draw(c + e) - draw(c - e)) / (2 * h)
            # float64 central differences: error ~h^2 f''' + 1e-16 |f| / h, far below 1e-5
            assert abs(float(g_lp[i, j] - fd)) < 1e-5 * max(1.0, abs(float(fd)))
            assert abs(float(g_s[i, j] - fd_s)) < 1e-5 * max(1.0, abs(float(fd_s)))
    assert g_lp.abs().max() > 1e-3


def test_broadcasting_equals_loop_and_map_wrapper():
    flow, c = _flows()[1]
    x = torch.randn(1, 4, dtype=F64)
    grid = torch.stack([torch.linspace(0.1, 0.5, 6), torch.linspace(0.6, 1.0, 6)], -1).to(F64)
    torch.testing.assert_close(flow.log_prob(x, grid), torch.stack([flow.log_prob(x[0], g) for g in grid]))
    torch.manual_seed(4)
    mm = randomize(MapMAF((1, 2, 2), context_dim=2, transforms=2, hidden=(16,)).double(), 0.3)
    maps = torch.randn(5, 1, 2, 2, dtype=F64)
    ref = torch.stack([mm.log_prob(m, grid[0]) for m in maps])
    torch.testing.assert_close(mm.log_prob(maps, grid[0]), ref)
    # MapMAF is the MAF of the flattened map
    flat = MAF(**{k: v for k, v in mm.architecture.items() if k != "shape"}, features=4).double()
    flat.load_state_dict(mm.state_dict())
    torch.testing.assert_close(flat.log_prob(maps.reshape(5, 4), grid[0]), ref)
    s = mm.sample(3, grid[1], generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 1, 2, 2)
    torch.testing.assert_close(mm.inverse(mm(s, grid[1])[0], grid[1]), s.reshape(3, 1, 2, 2))


def test_architecture_round_trip():
    for flow, c in _flows():
        arch = json.loads(json.dumps(flow.architecture))
        clone = MAF(**arch).double()
        clone.load_state_dict(flow.state_dict())
        x = torch.randn(2, 4, dtype=F64)
        cc = None if c is None else c[:2]
        torch.testing.assert_close(clone.log_prob(x, cc), flow.log_prob(x, cc))


def test_bad_inputs():
    with pytest.raises(ValueError, match="x"):
        MAF(3).log_prob(torch.randn(2, 4))
    with pytest.raises(ValueError, match="context"):
        MAF(3, context_dim=2).log_prob(torch.randn(2, 3))
    with pytest.raises(ValueError, match="order"):
        MAF(3, order="sideways")
