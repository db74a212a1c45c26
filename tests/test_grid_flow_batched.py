"""Grid engine on a conditional-flow likelihood: the batched path (one map, all grid conditions in
network-sized batches through the Pyro model) against a point-by-point reference that bypasses the
engine and the model (the network's log_prob for the one map and one condition at a time, plus the
transform's Jacobian and the uniform prior by hand). A 16 x 16 conditional Glow stands in for
hi-cglow-64 so that the test is fast; its weights are perturbed so that the context matters."""

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from bayessky import infer
from bayessky.distributions import FlowDistribution
from bayessky.nn import ConditionalGlow

LOW, HIGH = [0.1, 0.6], [0.5, 1.0]
TRANSFORM = [{"name": "log10"}, {"name": "standardise", "mean": 8.0, "std": 0.5}]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flow():
    torch.manual_seed(0)
    net = ConditionalGlow((1, 16, 16), 2, levels=2, steps=2, hidden=8, context_low=LOW, context_high=HIGH)
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised layers (injectors, priors, last convs) too
            p.add_(0.1 * torch.randn_like(p))
    net.eval()
    d = FlowDistribution(net, torch.tensor([0.3, 0.8]), TRANSFORM)
    with torch.no_grad():
        data = d.sample()
    return net, data


def model(data, net):
    om = pyro.sample("Omega_m", dist.Uniform(torch.tensor(LOW[0]), HIGH[0]))
    s8 = pyro.sample("sigma_8", dist.Uniform(torch.tensor(LOW[1]), HIGH[1]))
    pyro.sample("map", FlowDistribution(net, torch.stack([om, s8], -1), TRANSFORM), obs=data)


def reference_log_joint(net, data, axes):
    """log p(theta, map) point by point, straight from the network (no Pyro, no batching)."""
    y = torch.log10(data).sub(8.0).div(0.5)
    # Jacobian of x -> (log10 x - 8) / 0.5, summed over pixels
    ladj = float(-(torch.log(data.double()) + math.log(math.log(10) * 0.5)).sum())
    prior = -math.log(HIGH[0] - LOW[0]) - math.log(HIGH[1] - LOW[1])
    out = np.empty((len(axes["Omega_m"]), len(axes["sigma_8"])))
    with torch.no_grad():
        for i, a in enumerate(axes["Omega_m"]):
            for j, b in enumerate(axes["sigma_8"]):
                c = torch.tensor([[a, b]], dtype=torch.float32)
                out[i, j] = float(net.log_prob(y[None, None], c)[0]) + ladj + prior
    return out


AXES = {"Omega_m": np.linspace(0.12, 0.48, 7), "sigma_8": np.linspace(0.62, 0.98, 6)}


@pytest.fixture(scope="module")
def reference(flow):
    return reference_log_joint(*flow, AXES)


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_grid_flow_batched_equals_point_by_point(flow, reference, chunk_size):
    net, data = flow
    axes = AXES
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fall-back to point-by-point evaluation would warn
        post = infer.grid(model, data, grid=axes, net=net, chunk_size=chunk_size)
    ref = reference
    lj = post.log_prior[0] + post.log_likelihood[0]
    np.testing.assert_allclose(lj, ref, rtol=1e-6)
    # the normalised log-weights (equal cells): what the posterior is made of. The network runs in
    # float32: a log density of ~5e3 carries rounding of ~5e3 x 6e-8 x (a few ops) ~ 1e-3, not
    # less, whichever path computes it
    lw_ref = ref - np.logaddexp.reduce(ref.reshape(-1))
    np.testing.assert_allclose(np.log(post.weights), lw_ref, rtol=1e-5, atol=2e-3)
    # the context matters in this stand-in (otherwise the test would prove little)
    assert np.ptp(ref) > 1.0
