"""A tiny per-pixel Gaussian flow used by the training tests, checked against scipy first.

``AffineFlow``: y = mu + W c + exp(log_s) * z, z ~ N(0, I), per pixel. Its maximum-likelihood
fit is the per-pixel sample mean and standard deviation, so a trainer can be checked against a
closed form without the real networks.
"""

import math

import numpy as np
import scipy.stats
import torch
from torch import nn

from bayessky.nn.registry import NETWORKS, NetworkSpec


class AffineFlow(nn.Module):
    def __init__(self, shape, context_dim=0):
        super().__init__()
        self.shape, self.context_dim = tuple(int(s) for s in shape), int(context_dim)
        self.mu = nn.Parameter(torch.zeros(self.shape))
        self.log_s = nn.Parameter(torch.zeros(self.shape))
        self.w = nn.Parameter(torch.zeros(self.context_dim, *self.shape)) if self.context_dim else None

    @property
    def architecture(self):
        return {"shape": list(self.shape), "context_dim": self.context_dim}

    def _loc(self, context, n):
        if context is None:
            return self.mu.expand(n, *self.shape)
        c = context.reshape(-1, self.context_dim).expand(n, -1)
        return self.mu + torch.einsum("bd,d...->b...", c, self.w)

    def log_prob(self, x, context=None):
        z = (x - self._loc(context, x.shape[0])) * torch.exp(-self.log_s)
        return (-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - self.log_s).flatten(1).sum(1)

    def sample(self, n, context=None, temperature=1.0):
        z = temperature * torch.randn(n, *self.shape, dtype=self.mu.dtype, device=self.mu.device)
        return self._loc(context, n) + torch.exp(self.log_s) * z


def single_thread():
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def register_toy(monkeypatch) -> str:
    """Register the stand-in as kind "toyflow" for one test (monkeypatch removes it afterwards)."""
    monkeypatch.setitem(NETWORKS, "toyflow", NetworkSpec(AffineFlow, "nll", "optional"))
    return "toyflow"


def test_standin_log_prob_matches_scipy():
    torch.manual_seed(0)
    f = AffineFlow((1, 3, 3), context_dim=2).double()
    with torch.no_grad():
        for p in f.parameters():
            p.normal_()
    x, c = torch.randn(4, 1, 3, 3).double(), torch.randn(4, 2).double()
    loc = (f.mu + torch.einsum("bd,d...->b...", c, f.w)).detach().numpy()
    ref = scipy.stats.norm.logpdf(x.numpy(), loc, np.exp(f.log_s.detach().numpy())).reshape(4, -1).sum(1)
    np.testing.assert_allclose(f.log_prob(x, c).detach().numpy(), ref, rtol=1e-12)
