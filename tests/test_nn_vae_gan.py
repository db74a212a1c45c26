"""VAE and GAN networks: ELBO vs an independent Monte-Carlo estimate, WGAN-GP penalty vs closed
form and finite differences, layer shapes and parameter counts vs cosmikyu's published table."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bayessky.nn.gan import GAN, Critic, Generator, gradient_penalty
from bayessky.nn.vae import VAE

LOG2PI = math.log(2 * math.pi)
M = 3000  # Monte-Carlo draws: tolerances below are 4 standard errors at this M


def _normal_logpdf(x, mu, sigma):
    # written out here so the reference does not share code with torch.distributions
    return -0.5 * ((x - mu) / sigma) ** 2 - torch.log(torch.as_tensor(sigma, dtype=x.dtype)) - 0.5 * LOG2PI


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny networks: on a loaded 2-core machine intra-op thread hand-offs dominate the arithmetic
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_vae():
    torch.manual_seed(0)
    vae = VAE((1, 16, 16), latent_dim=3, channels=(4, 4, 8)).double()
    with torch.no_grad():
        vae.log_sigma.fill_(math.log(0.7))
    return vae


def _independent_elbo(vae, x, m, seed, log_prior):
    """ELBO = E_q[log p(x|z) + log p(z) - log q(z|x)] by plain Monte Carlo with m draws."""
    q = vae.encode(x)
    loc, scale = q.base_dist.loc, q.base_dist.scale  # (B, D)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((m,) + loc.shape, generator=g, dtype=loc.dtype)
    z = loc + scale * eps
    with torch.no_grad():
        mean = vae.decoder(z.reshape(-1, vae.latent_dim)).reshape(m, *x.shape)
    sigma = 0.7
    log_lik = _normal_logpdf(x, mean, sigma).flatten(2).sum(-1)
    log_q = _normal_logpdf(z, loc, scale).sum(-1)
    terms = log_lik + log_prior(z) - log_q  # (m, B)
    return terms.mean(0), terms.std(0) / math.sqrt(m)


def test_elbo_matches_independent_monte_carlo(tiny_vae):
    vae = tiny_vae
    torch.manual_seed(1)
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    ref, se_ref = _independent_elbo(vae, x, M, seed=2,
                                    log_prior=lambda z: _normal_logpdf(z, 0.0, 1.0).sum(-1))
    torch.manual_seed(3)
    with torch.no_grad():
        got = vae.elbo(x, num_samples=M)
    # vae.elbo's only noise is the reconstruction average (KL analytic): its standard error is at
    # most the reference's, so 4 combined standard errors is a 4-sigma bound
    tol = 4 * math.sqrt(2) * se_ref
    assert torch.all((got - ref).abs() < tol), (got, ref, tol)
    # beta only scales the analytic KL = E_q[log q - log p]; check KL itself against Monte Carlo
    with torch.no_grad():
        torch.manual_seed(3)
        kl_half = 2 * (vae.elbo(x, beta=0.5, num_samples=M) - got)
    with torch.no_grad():
        q = vae.encode(x)
    z = q.sample((M,))
    kl_mc = (_normal_logpdf(z, q.base_dist.loc, q.base_dist.scale).sum(-1)
             - _normal_logpdf(z, 0.0, 1.0).sum(-1))
    assert torch.allclose(kl_half, kl_mc.mean(0), atol=float(4 * kl_mc.std(0).max() / math.sqrt(M)))


class _ShiftedNormalFlow(torch.nn.Module):
    """A stand-in 'latent flow' with density N(2, 0.6^2) per latent, far enough from the default
    N(0, I) prior that a VAE ignoring its flow misses the ELBO by ~9 tolerances (N(0.7, 1.6^2)
    moved it by less than one: the reconstruction noise dominates the standard error)."""

    shape = (3,)
    architecture = {"features": 3}
    loc, scale = 2.0, 0.6

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def log_prob(self, z, context=None):
        u = (z - self.loc) / self.scale
        return (-0.5 * u**2 - math.log(self.scale) - 0.5 * LOG2PI).sum(-1) + 0 * self.dummy

    def sample(self, n, context=None, temperature=1.0):
        return self.loc + self.scale * temperature * torch.randn(n, 3, dtype=self.dummy.dtype)


def test_elbo_with_latent_flow_uses_monte_carlo_kl(tiny_vae):
    vae = tiny_vae
    torch.manual_seed(4)
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    ref, se = _independent_elbo(vae, x, M, seed=5,
                                log_prior=lambda z: _normal_logpdf(z, 2.0, 0.6).sum(-1))
    ref_std, _ = _independent_elbo(vae, x, M, seed=5,
                                   log_prior=lambda z: _normal_logpdf(z, 0.0, 1.0).sum(-1))
    tol = 4 * math.sqrt(2) * se
    # the check below can only tell the flow from the default prior if their ELBOs differ
    assert torch.all((ref - ref_std).abs() > 3 * tol), (ref, ref_std, tol)
    vae.set_latent_flow(_ShiftedNormalFlow().double())
    torch.manual_seed(6)
    with torch.no_grad():
        got = vae.elbo(x, num_samples=M)
    assert torch.all((got - ref).abs() < tol), (got, ref, tol)
    assert vae.architecture["latent_flow"] == {"features": 3}


def test_vae_shapes_and_batch_independence():
    torch.manual_seed(0)
    for s in (16, 32, 64):
        vae = VAE((2, s, s), latent_dim=5, channels=(4, 8, 8))
        x = torch.randn(3, 2, s, s)
        q = vae.encode(x)
        assert q.batch_shape == (3,) and q.event_shape == (5,)
        assert vae.decode(torch.randn(4, 3, 5)).shape == (4, 3, 2, s, s)
        assert vae.elbo(x).shape == (3,)
    # GroupNorm is per-sample: a map must not depend on the rest of its batch, in train mode too
    vae.train()
    z = torch.randn(4, 5)
    assert torch.allclose(vae.decode(z)[1:2], vae.decode(z[1:2]), atol=1e-6)
    # DustVAEder layout at the default size: latent 256, decoder base 4x4 (= 64/16)
    default = VAE()
    assert default.latent_dim == 256 and default._base == (128, 4, 4)
    rebuilt = VAE(**json.loads(json.dumps(default.architecture)))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in default.state_dict().items()}
    with pytest.raises(ValueError, match="shape"):
        VAE((1, 24, 24))


def test_gradient_penalty_linear_critic_closed_form():
    # D(x) = w.x + b has grad_x D = w everywhere: penalty = lambda (|w| - 1)^2 for any eps,
    # and d penalty / d w = 2 lambda (|w| - 1) w / |w|
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 1).double()
    critic = lambda x: lin(x.flatten(1)).squeeze(-1)  # noqa: E731
    real, fake = torch.randn(5, 1, 3, 4, dtype=torch.float64), torch.randn(5, 1, 3, 4, dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, lambda_gp=10.0)
    w = lin.weight.detach().flatten()
    norm = w.norm()
    assert torch.allclose(gp, 10.0 * (norm - 1) ** 2, rtol=1e-12)
    gp.backward()
    assert torch.allclose(lin.weight.grad.flatten(), 2 * 10.0 * (norm - 1) * w / norm, rtol=1e-10)


def test_gradient_penalty_matches_finite_differences():
    torch.manual_seed(1)
    critic = Critic((1, 8, 8), width=2).double()
    real, fake = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.randn(3, 1, 8, 8, dtype=torch.float64)
    eps = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, lambda_gp=10.0, eps=eps)
    # reference: central differences of the critic at each interpolate, pixel by pixel
    h = 1e-6
    xhat = eps.reshape(-1, 1, 1, 1) * real + (1 - eps.reshape(-1, 1, 1, 1)) * fake
    grads = torch.zeros(3, 64, dtype=torch.float64)
    with torch.no_grad():
        for j in range(64):
            e = torch.zeros(64, dtype=torch.float64)
            e[j] = h
            e = e.reshape(1, 1, 8, 8)
            grads[:, j] = (critic(xhat + e) - critic(xhat - e)) / (2 * h)
    ref = 10.0 * ((grads.norm(dim=1) - 1) ** 2).mean()
    # float64 central differences: truncation O(h^2) and round-off ~1e-16/h -> ~1e-9 relative
    assert torch.allclose(gp, ref, rtol=1e-6), (gp, ref)
    with pytest.raises(ValueError, match="fake"):
        gradient_penalty(critic, real, fake[:2])


def test_critic_matches_cosmikyu_table_at_128():
    # Goel's GANs and VAEs thesis, Table I: N = 5 input components, 128x128;
    # conv4x4 stride 2 widths 64..1024 + linear
    critic = Critic((5, 128, 128), width=64)
    shapes, x = [], torch.zeros(1, 5, 128, 128)
    for layer in critic.net:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4)]
    per_layer = [sum(p.numel() for p in m.parameters()) for m in critic.net if len(list(m.parameters()))]
    assert per_layer == [5184, 131200, 524544, 2097664, 8389632, 16385]
    assert sum(per_layer) == 11164609
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in critic.modules())


def test_generator_and_critic_shapes_at_64_and_128():
    torch.manual_seed(0)
    for s, widths in ((64, [64, 128, 256, 512]), (128, [64, 128, 256, 512, 1024])):
        g = Generator((1, s, s), latent_dim=256, width=64).eval()
        c = Critic((1, s, s), width=64)
        convs = [m.out_channels for m in c.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs == widths
        tconvs = [m.in_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
        assert tconvs == widths[::-1]
        z = torch.randn(2, 256)
        x = g(z)
        assert x.shape == (2, 1, s, s)
        assert c(x).shape == (2,)
        assert x.abs().max() < 15.0  # the scaled-tanh bound
    gan = GAN((1, 16, 16), latent_dim=8, width=4, critic_width=2)
    rebuilt = GAN(**json.loads(json.dumps(gan.architecture)))
    assert rebuilt.critic.width == 2 and rebuilt.generator.width == 4
    assert gan.decode(torch.randn(5, 2, 8)).shape == (5, 2, 1, 16, 16)


def test_two_stage_latent_flow_fits_the_aggregate_posterior():
    # codes = encoder means of 512 maps: far from N(0, I) for an untrained encoder. Reference: the
    # closed-form maximum-likelihood Gaussian of the same codes; a fitted MAF must reach it
    # (within 0.3 nats; it may beat it, the codes need not be Gaussian) and beat N(0, I) by far
    # (measured: flow -0.57, Gaussian MLE -0.75, N(0, I) -3.13 nats per code).
    pytest.importorskip("bayessky.nn.maf")
    from bayessky.nn.vae import fit_latent_flow

    torch.manual_seed(0)
    vae = VAE((1, 16, 16), latent_dim=3, channels=(4, 4, 4)).eval()
    maps = torch.randn(512, 1, 16, 16)
    flow = fit_latent_flow(vae, maps, {"features": 3, "transforms": 2, "hidden": [16]}, steps=400,
                           lr=1e-2, codes="mean", seed=0)
    with torch.no_grad():
        z = vae.encode(maps).base_dist.loc.double()
        mu, cov = z.mean(0), torch.cov(z.T, correction=0)
        gauss = torch.distributions.MultivariateNormal(mu, cov).log_prob(z).mean()
        std_normal = _normal_logpdf(z, 0.0, 1.0).sum(-1).mean()
        fitted = flow.log_prob(z.float()).double().mean()
    assert fitted > gauss - 0.3, (fitted, gauss)
    assert fitted > std_normal + 2.0, (fitted, gauss, std_normal)
    assert vae.latent_flow is flow and vae.architecture["latent_flow"]["features"] == 3
    assert vae.sample(4).shape == (4, 1, 16, 16)


@pytest.mark.parametrize("cls, min_size", [(VAE, 16), (Generator, 8), (Critic, 8)])
def test_map_shape_check_names_the_smallest_size(cls, min_size):
    """One check (bayessky.nn.layers.check_square_shape): (C, S, S), S a power of 2 >= min_size."""
    from bayessky.nn.layers import check_square_shape

    assert check_square_shape([1, min_size, min_size], min_size) == (1, min_size, min_size)
    assert cls(shape=(2, min_size, min_size)).shape == (2, min_size, min_size)
    bad = [(1, min_size // 2, min_size // 2), (1, min_size, 2 * min_size), (1, 3 * min_size, 3 * min_size),
           (0, min_size, min_size)]
    msg = rf"shape: expected \(C, S, S\) with S a power of 2 >= {min_size}"
    for shape in bad:
        with pytest.raises(ValueError, match=msg):
            cls(shape=shape)
    with pytest.raises(ValueError, match=r"shape: expected \(channels, height, width\)"):
        cls(shape=(min_size, min_size))
