"""Decoder / generator priors: a latent z inside a Pyro model, the map x = T^-1(G(z))."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from torch.distributions.transforms import Transform

from .._validate import as_tensor, check_finite, device_dtype
from .flow import FlowDistribution, as_transform

__all__ = ["LatentPrior"]


class LatentPrior:
    r"""A latent-variable prior on maps for use inside Pyro models.

    The generative model is :math:`z \sim p(z)`, :math:`x = T^{-1}(G(z))` (plus, with
    ``noise``, :math:`x = T^{-1}(G(z) + \sigma \epsilon)`), where :math:`G` is a VAE decoder or a
    GAN generator working in the network's transformed space, :math:`T` the data transform
    (physical -> network) and :math:`p(z)` either :math:`\mathcal{N}(0, I)` or a latent flow
    (two-stage VAE, Lanusse et al. 2020). There is no tractable density of :math:`x`; inference
    runs on :math:`z` (HMC, SVI, MAP), as DustVAEder fits masked maps through the latent.

    ``prior.sample("dust")`` records the sites ``"dust_latent"`` (the latent, a sample site) and
    ``"dust"`` (the decoded map in user units, a deterministic site) and returns the map. Inside
    ``pyro.plate`` contexts the latent gets the plates' batch dimensions and so does the map.

    Arguments:
        decoder: a module or callable mapping latents (N, latent_dim) to maps (N, C, H, W) in
            network space (e.g. :class:`bayessky.nn.vae.VAE` or its ``decoder``,
            :class:`bayessky.nn.gan.Generator`).
        latent_dim: dimension of z.
        latent_flow: optional flow over (latent_dim,) vectors used as p(z) (conditioned on
            ``context`` if it is a conditional flow).
        transform: data transform (physical -> network space), a torch ``Transform`` or a
            config list; None for identity.
        noise: False (the decoded mean), True (add the decoder's ``sigma`` per channel as a
            latent ``name + "_noise"`` site of standard normals), or a float sigma.

    Example:
        >>> from bayessky.nn.gan import Generator
        >>> prior = LatentPrior(Generator((1, 16, 16), latent_dim=8, width=4).eval(), 8)
        >>> def model():
        ...     with pyro.plate("maps", 3):
        ...         return prior.sample("x")
        >>> model().shape
        torch.Size([3, 16, 16])
    """

    def __init__(
        self,
        decoder: Callable[[torch.Tensor], torch.Tensor],
        latent_dim: int,
        latent_flow: torch.nn.Module | None = None,
        transform: Transform | list | None = None,
        noise: bool | float = False,
    ):
        self.decoder = decoder
        self.latent_dim = int(latent_dim)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim: must be >= 1, got {latent_dim}")
        self.latent_flow = latent_flow
        self.transform = as_transform(transform)
        # inf would pass "> 0" and turn every decoded map into inf/NaN
        if not (isinstance(noise, bool) or (isinstance(noise, (int, float)) and math.isfinite(noise)
                                            and noise > 0)):
            raise ValueError(f"noise: expected True, False or a positive sigma, got {noise!r}")
        self.noise = noise

    # -- device and dtype follow the decoder's parameters (a plain callable: CPU, default dtype)
    def to(self, *args, **kwargs) -> LatentPrior:
        """Move the decoder (and latent flow) like ``torch.nn.Module.to``; returns self."""
        for m in (self.decoder, self.latent_flow):
            if isinstance(m, torch.nn.Module):
                m.to(*args, **kwargs)
        return self

    def latent_distribution(self, context=None):
        """p(z): N(0, I) with event shape (latent_dim,), or the latent flow's distribution."""
        if self.latent_flow is not None:
            return FlowDistribution(self.latent_flow, context)
        device, dtype = device_dtype(self.decoder)
        zero = torch.zeros(self.latent_dim, dtype=dtype, device=device)
        return dist.Normal(zero, torch.ones_like(zero)).to_event(1)

    def _sigma(self, like: torch.Tensor) -> torch.Tensor:
        if self.noise is True:
            sigma = getattr(self.decoder, "sigma", None)
            if sigma is None:
                raise ValueError("noise: the decoder has no 'sigma'; pass noise=<float> instead")
            return torch.as_tensor(sigma, dtype=like.dtype, device=like.device).reshape(-1, 1, 1)
        return torch.as_tensor(float(self.noise), dtype=like.dtype, device=like.device)

    # -- the map ----------------------------------------------------------------------------
    def decode_net(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in network space: (..., C, H, W) for z of shape (..., latent_dim)."""
        if not isinstance(z, torch.Tensor):
            device, dtype = device_dtype(self.decoder)
            z = as_tensor(z, "z", dtype=dtype, device=device)
        if z.ndim < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z: expected trailing dimension {self.latent_dim}, got shape {tuple(z.shape)}")
        lead = z.shape[:-1]
        y = self.decoder(z.reshape(-1, self.latent_dim))
        return y.reshape(*lead, *y.shape[1:])

    def to_user(self, y: torch.Tensor) -> torch.Tensor:
        """Network-space maps (..., C, H, W) -> user units; single-channel maps lose the C axis."""
        x = self.transform.inv(y) if self.transform is not None else y
        return x.squeeze(-3) if x.shape[-3] == 1 else x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Maps in user units, (..., H, W) or (..., C, H, W), for latents (..., latent_dim)."""
        # Checked here, the user-facing call, and not in decode_net: inside HMC a NaN latent is
        # a divergence for the sampler to reject, not an error. O(latent_dim), not O(map).
        if not isinstance(z, torch.Tensor):
            device, dtype = device_dtype(self.decoder)
            z = as_tensor(z, "z", dtype=dtype, device=device)
        check_finite(z, "z")
        return self.to_user(self.decode_net(z))

    def sample(self, name: str, context=None) -> torch.Tensor:
        """Draw ``name + "_latent"``, decode, record ``pyro.deterministic(name, map)``, return the map."""
        z = pyro.sample(name + "_latent", self.latent_distribution(context))
        y = self.decode_net(z)
        if self.noise is not False:
            sigma = self._sigma(y)
            eps = pyro.sample(name + "_noise", dist.Normal(torch.zeros_like(y[(0,) * (y.ndim - 3)]), 1.0)
                              .to_event(3))
            y = y + sigma * eps
        x = self.to_user(y)
        event_dim = 2 if x.ndim >= 2 and (y.shape[-3] == 1) else 3
        return pyro.deterministic(name, x, event_dim=event_dim)
