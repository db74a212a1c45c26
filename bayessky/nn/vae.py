"""Convolutional variational auto-encoder for maps, with an optional latent-flow prior."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.distributions import Independent, Normal

from .._validate import device_dtype
from .layers import check_square_shape

__all__ = ["VAE", "fit_latent_flow"]


def _groups(channels: int, max_groups: int = 8) -> int:
    """Largest divisor of ``channels`` not above ``max_groups`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


class VAE(nn.Module):
    r"""Convolutional VAE with a diagonal-Normal encoder and a per-pixel Gaussian decoder.

    The generative model is :math:`z \sim p(z)`, :math:`x \mid z \sim \mathcal{N}(g_\theta(z),
    \sigma^2 I)` with :math:`p(z) = \mathcal{N}(0, I)` or, after two-stage training, a latent flow
    fitted to the aggregate posterior. The encoder gives :math:`q_\phi(z \mid x) =
    \mathcal{N}(\mu_\phi(x), \mathrm{diag}\, s_\phi(x)^2)`; training maximises

    .. math:: \mathcal{L}(x) = \mathbb{E}_{q}[\log p(x \mid z)]
              - \beta\, \mathrm{KL}(q(z \mid x) \,\|\, p(z)).

    Layout (DustVAEder-like, for an S x S map): encoder = 3 x [conv 4x4 stride 2 -> GroupNorm ->
    ReLU] -> dense -> (mu, log s); decoder = dense -> (c, S/16, S/16) -> 3 x [transposed conv 4x4
    stride 2 -> GroupNorm -> ReLU] -> transposed conv 4x4 stride 2 -> per-pixel mean.

    GroupNorm instead of DustVAEder's BatchNorm: the decoder is evaluated inside Pyro models on
    batches of any size (often one map in HMC), and BatchNorm makes a map depend on the other maps
    of its batch in train mode and on running statistics in eval mode; GroupNorm is per-sample, so
    ``decode(z)`` is the same function in both modes and for every batch composition.

    References:
        | Auto-Encoding Variational Bayes (Kingma & Welling, 2013) https://arxiv.org/abs/1312.6114
        | Generative models of Galactic foregrounds (Thorne et al., DustVAEder, 2021)
        | Deep generative models for galaxy image simulations (Lanusse et al., 2020)
          https://arxiv.org/abs/2008.03833 (two-stage latent flow)

    Arguments:
        shape: map shape (C, S, S), S a power of 2 >= 16, in the network's (transformed) units.
        latent_dim: dimension of z (DustVAEder: 256).
        channels: encoder widths of the 3 strided convolutions; the decoder mirrors them.
        sigma: fixed decoder noise standard deviation, or None to learn one per channel.
        latent_flow: optional keyword arguments of a :class:`bayessky.nn.maf.MAF` over
            ``(latent_dim,)`` vectors, used as p(z) instead of N(0, I) (see :func:`fit_latent_flow`).

    Example:
        >>> vae = VAE((1, 16, 16), latent_dim=4, channels=(4, 8, 8))
        >>> vae.elbo(torch.randn(2, 1, 16, 16)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        shape: Sequence[int] = (1, 64, 64),
        latent_dim: int = 256,
        channels: Sequence[int] = (32, 64, 128),
        sigma: float | None = None,
        latent_flow: dict | None = None,
    ):
        super().__init__()
        self.shape = check_square_shape(shape, 16)
        self.latent_dim = int(latent_dim)
        self.channels = tuple(int(c) for c in channels)
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"channels: expected 3 positive widths, got {tuple(channels)}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma: must be > 0 or None (learned), got {sigma}")
        c, s, _ = self.shape
        c1, c2, c3 = self.channels

        enc, cin = [], c
        for cout in self.channels:
            enc += [nn.Conv2d(cin, cout, 4, 2, 1), nn.GroupNorm(_groups(cout), cout), nn.ReLU()]
            cin = cout
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c3 * (s // 8) ** 2, 2 * self.latent_dim))

        self._base = (c3, s // 16, s // 16)
        dec = [nn.Linear(self.latent_dim, c3 * (s // 16) ** 2), nn.Unflatten(1, self._base)]
        widths = [c3, c3, c2, c1]
        for cin, cout in zip(widths[:-1], widths[1:]):
            dec += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.GroupNorm(_groups(cout), cout), nn.ReLU()]
        dec.append(nn.ConvTranspose2d(c1, c, 4, 2, 1))
        self.decoder = nn.Sequential(*dec)

        self.fixed_sigma = None if sigma is None else float(sigma)
        # learned per-channel log sigma starts at log 1: standardised maps have unit variance
        self.log_sigma = nn.Parameter(torch.zeros(c)) if sigma is None else None

        self.latent_flow = None
        self._latent_flow_kwargs = None
        if latent_flow is not None:
            self.set_latent_flow(latent_flow)

    # --- architecture -------------------------------------------------------------------
    @property
    def architecture(self) -> dict:
        """JSON-able constructor keyword arguments (``VAE(**vae.architecture)`` rebuilds it)."""
        return {
            "shape": list(self.shape),
            "latent_dim": self.latent_dim,
            "channels": list(self.channels),
            "sigma": self.fixed_sigma,
            "latent_flow": self._latent_flow_kwargs,
        }

    def set_latent_flow(self, flow: dict | nn.Module) -> nn.Module:
        """Attach a latent flow p(z) given as MAF keyword arguments or a module with ``architecture``."""
        if isinstance(flow, dict):
            from .maf import MAF

            flow = MAF(**flow)
        if not hasattr(flow, "log_prob") or not hasattr(flow, "sample"):
            raise TypeError(f"latent_flow: expected a flow with log_prob and sample, "
                            f"got {type(flow).__name__}")
        self.latent_flow = flow
        self._latent_flow_kwargs = dict(getattr(flow, "architecture", {}) or {})
        device, dtype = device_dtype(self)
        flow.to(device=device, dtype=dtype)
        return flow

    # --- the two halves -------------------------------------------------------------------
    @property
    def sigma(self) -> torch.Tensor:
        """Decoder noise standard deviation per channel, shape (C,)."""
        if self.log_sigma is not None:
            return self.log_sigma.exp()
        p = self.decoder[0].weight
        return torch.full((self.shape[0],), self.fixed_sigma, device=p.device, dtype=p.dtype)

    def encode(self, x: torch.Tensor) -> Independent:
        """q(z | x) for maps ``x`` of shape (B, C, S, S): a Normal with event shape (latent_dim,)."""
        h = self.encoder(x)
        loc, log_scale = h.chunk(2, dim=-1)
        # clamp keeps exp finite for the outlier maps an untrained encoder meets
        return Independent(Normal(loc, log_scale.clamp(-12.0, 6.0).exp()), 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-pixel mean g(z) of shape (..., C, S, S) for latents ``z`` of shape (..., latent_dim)."""
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, self.latent_dim))
        return out.reshape(*lead, *self.shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    # --- densities ------------------------------------------------------------------------
    def latent_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), shape ``z.shape[:-1]``: N(0, I) or the latent flow."""
        if self.latent_flow is not None:
            lead = z.shape[:-1]
            return self.latent_flow.log_prob(z.reshape(-1, self.latent_dim)).reshape(lead)
        return -0.5 * (z**2).sum(-1) - 0.5 * self.latent_dim * math.log(2 * math.pi)

    def elbo(self, x: torch.Tensor, beta: float = 1.0, num_samples: int = 1) -> torch.Tensor:
        r"""Evidence lower bound per map, shape (B,), in nats, for ``x`` of shape (B, C, S, S).

        The reconstruction term is a reparametrised Monte-Carlo average over ``num_samples``
        draws of z; the KL term is analytic for the N(0, I) prior,
        :math:`\tfrac12 \sum_i (\mu_i^2 + s_i^2 - 1 - \log s_i^2)`, and a Monte-Carlo estimate
        :math:`\log q(z) - \log p_\text{flow}(z)` on the same draws with a latent flow.
        """
        q = self.encode(x)
        z = q.rsample((num_samples,))  # (K, B, D)
        mean = self.decode(z)  # (K, B, C, S, S)
        sigma = self.sigma.reshape(-1, 1, 1)
        rec = Normal(mean, sigma).log_prob(x).flatten(2).sum(-1).mean(0)
        if self.latent_flow is None:
            loc, scale = q.base_dist.loc, q.base_dist.scale
            kl = 0.5 * (loc**2 + scale**2 - 1.0 - 2.0 * scale.log()).sum(-1)
        else:
            kl = (q.log_prob(z) - self.latent_log_prob(z)).mean(0)
        return rec - beta * kl

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, noise: bool = False) -> torch.Tensor:
        """``n`` maps (n, C, S, S) from the generative model; ``noise`` adds the decoder's sigma."""
        p = self.decoder[0].weight
        if self.latent_flow is not None:
            z = self.latent_flow.sample(n, temperature=temperature)
        else:
            z = temperature * torch.randn(n, self.latent_dim, device=p.device, dtype=p.dtype)
        x = self.decode(z)
        return x + self.sigma.reshape(-1, 1, 1) * torch.randn_like(x) if noise else x


def fit_latent_flow(
    vae: VAE,
    maps: torch.Tensor,
    flow: dict | nn.Module | None = None,
    *,
    steps: int = 2000,
    lr: float = 1e-3,
    batch_size: int = 256,
    codes: str = "sample",
    seed: int | None = 0,
) -> nn.Module:
    """Two-stage prior (Lanusse et al. 2020): fit a MAF to the frozen encoder's codes of ``maps``.

    A VAE trained with an N(0, I) prior leaves holes in latent space (the prior/aggregate-posterior
    mismatch DustVAEder reports: prior samples look worse than reconstructions). Fitting a flow to
    the aggregate posterior q(z) = mean_x q(z | x) and sampling from it instead closes that gap.

    Arguments:
        vae: a trained VAE (left unchanged apart from its ``latent_flow``).
        maps: training maps (N, C, S, S) in the network's units.
        flow: MAF keyword arguments, a ready flow module, or None for a default
            ``{"features": latent_dim}`` MAF.
        steps, lr, batch_size: Adam maximum-likelihood fit of the flow to the codes.
        codes: "sample" (a fresh z ~ q(z | x) each step: the aggregate posterior) or "mean".
        seed: seed for the minibatch and code draws (None: the global generator).

    Returns:
        The fitted flow, also attached as ``vae.latent_flow``.
    """
    if codes not in ("sample", "mean"):
        raise ValueError(f"codes: expected 'sample' or 'mean', got {codes!r}")
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    with torch.no_grad():
        was = vae.training
        vae.eval()
        qs = [vae.encode(maps[i:i + 512]) for i in range(0, maps.shape[0], 512)]
        vae.train(was)
        loc = torch.cat([q.base_dist.loc for q in qs])
        scale = torch.cat([q.base_dist.scale for q in qs])
    flow = vae.set_latent_flow(flow if flow is not None else {"features": vae.latent_dim})
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    flow.train()
    for _ in range(int(steps)):
        idx = torch.randint(0, loc.shape[0], (min(batch_size, loc.shape[0]),), generator=gen)
        z = loc[idx]
        if codes == "sample":
            eps = torch.randn(z.shape, generator=gen).to(z)
            z = z + scale[idx] * eps
        loss = -flow.log_prob(z).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    return flow
