r"""Inpaint and denoise a dust intensity map under a learned (or exact) prior.

.. math::
    I \sim p(I), \qquad d = M\,(I + n), \qquad n \sim \mathcal N(0, \sigma^2) \text{ white},

with ``M`` a 0/1 mask (1 = observed; masked pixels carry no data). With a mask this is
inpainting (point-source holes, a strip); without one it is denoising (``M = 1``, typically a
higher ``noise_sigma``). The map is the deterministic site ``"I"`` (:data:`MAP_SITE`), so
``bayessky run`` writes its posterior mean and std maps and a figure.

Priors ``p(I)`` (option ``prior``):

- a shipped prior name or a prior folder (default ``"dust-glow-64"``, see
  :func:`bayessky.priors.load_prior`), or an already loaded prior object: a normalizing flow, VAE
  or GAN trained on dust maps;
- ``"true"``: the exact dust-toy-v1 model of :mod:`bayessky.families.dust_toy`,
  ``I = exp(0.8 g - 0.32)``, ``g ~ GRF(S_g)`` -- the Bayes-optimal reference on synthetic maps;
- ``"gaussian"``: ``I = 1 + s``, ``s ~ GRF(S_I)`` with the exact intensity spectrum
  :math:`S_I = \mathrm{fft2}[e^{0.64\,\xi_g} - 1]` (:func:`bayessky.families.dust_toy.intensity_spectrum`):
  the Wiener-filter posterior.

Parametrisation (option ``space``):

- ``"map"`` (default): sample the map in the prior's own pixel space, where the likelihood is
  diagonal -- for a flow its network space ``y = T(I)`` (site ``"I_net"``; ``T`` the card's data
  transform, e.g. standardised log10 I), for the true model the Gaussian field ``g`` (site ``"g"``);
- ``"latent"``: sample whitened latents ``z ~ N(0, 1)`` and decode -- for a Glow
  ``I = T^{-1}(f^{-1}(z))`` (site ``"I_latent"``), for the true model ``g = H(sqrt(S_g) u)``
  (site ``"g_latent"``; ``H`` the orthonormal Hartley transform :func:`bayessky.sky.hartley2`).
  VAE and GAN priors always sample their latent (site ``"I_latent"``).

Arguments of :func:`model`:
    data: observed map (n, n), intensity units (values at masked pixels are ignored).
    mask: (n, n) 0/1, 1 = observed; None = every pixel observed (denoising).
    prior: see above. noise_sigma: noise rms per pixel, intensity units (default 0.05, the
        dust-toy-v1 value): a number or a map (n, n) for inhomogeneous noise.
    space: ``"map"`` or ``"latent"``.

Use it as ``bayessky run dust-inpainting --data d.npy --mask mask.npy``, or copy the short
script ``inference/dust_inpainting.py`` to change the model.
"""

from __future__ import annotations

import os
from functools import lru_cache

import pyro
import pyro.distributions as dist
import torch

from ..distributions import FlowDistribution, GaussianRandomField, MapNormal
from ..families import dust_toy
from ..sky import hartley2

__all__ = ["DEFAULTS", "MAP_SITE", "NOISE_OPTION", "model", "prior_map", "learned_prior", "load_cached_prior"]

DEFAULTS = {
    "engine": "nuts",
    "backend": "fast",
    "num_chains": 4,
    "warmup_steps": 500,
    "num_samples": 500,
    "init_strategy": "map",
}
MAP_SITE = "I"
#: the option ``bayessky run --noise`` sets (a number or a per-pixel rms map)
NOISE_OPTION = "noise_sigma"


@lru_cache(maxsize=4)
def load_cached_prior(name: str, device: str):
    """:func:`bayessky.priors.load_prior`, cached per (name, device): a model runs many times."""
    from ..priors import load_prior

    return load_prior(name, device=device)


def learned_prior(prior, device) -> object:
    """The prior object for ``prior``: loaded (and cached) from a name or folder, or ``prior`` itself
    when it is already a loaded prior."""
    if isinstance(prior, (str, os.PathLike)):
        return load_cached_prior(str(prior), str(device))
    return prior


@lru_cache(maxsize=8)
def _spectra(n: int, device: str, dtype: torch.dtype):
    """sqrt S_g (the true model's field) and S_I (the exact intensity spectrum), as tensors."""
    s_g = torch.as_tensor(dust_toy.spectrum(n), dtype=dtype, device=device)
    s_i = torch.as_tensor(dust_toy.intensity_spectrum(n), dtype=dtype, device=device)
    return s_g.sqrt(), s_i


def prior_map(name: str, n: int, like: torch.Tensor, prior: str = "dust-glow-64", space: str = "map"):
    """Draw a map (n, n) from ``prior`` inside a Pyro model; records the deterministic site ``name``
    (latent sites ``name + "_net"`` / ``"_latent"`` / ``"_fluctuation"``, or ``"g"`` / ``"g_latent"``
    for ``prior="true"``). ``like``: a tensor giving the dtype and device."""
    kw = {"dtype": like.dtype, "device": like.device}
    if space not in ("map", "latent"):
        raise ValueError(f"space: expected 'map' or 'latent', got {space!r}")
    if isinstance(prior, str) and prior == "true":
        sqrt_s, _ = _spectra(n, str(like.device), like.dtype)
        if space == "map":
            g = pyro.sample("g", dust_toy.distribution(n, **kw))
        else:
            u = pyro.sample("g_latent", dist.Normal(torch.zeros(n * n, **kw), 1.0).to_event(1))
            g = hartley2(sqrt_s * u.reshape(*u.shape[:-1], n, n))
        return pyro.deterministic(name, dust_toy.intensity(g))
    if isinstance(prior, str) and prior == "gaussian":
        _, s_i = _spectra(n, str(like.device), like.dtype)
        s = pyro.sample(name + "_fluctuation", GaussianRandomField(s_i))
        return pyro.deterministic(name, 1.0 + s)  # E[I] = 1 for dust-toy-v1
    p = learned_prior(prior, like.device)
    if not hasattr(p, "distribution"):  # VAE / GAN: the latent is the only handle
        return p.sample(name).to(like.dtype)
    net = p.net
    if space == "map":
        # the flow's own pixel space y = T(I) (standardised log I): an unconstrained site, so a MAP
        # is the mode in y (as g for the true model), not the 1/I-skewed mode of p(I)
        y = pyro.sample(name + "_net", FlowDistribution(net))
        x = p.transform.inv(y) if p.transform is not None else y
        return pyro.deterministic(name, x.to(like.dtype))
    z = pyro.sample(name + "_latent", dist.Normal(torch.zeros(net.dim, **kw), 1.0).to_event(1))
    y = net.inverse(net.unflatten_latents(z.reshape(-1, net.dim).to(p.dtype)))
    x = p.transform.inv(y) if p.transform is not None else y
    return pyro.deterministic(name, x.to(like.dtype).reshape(*z.shape[:-1], n, n))


def model(
    data: torch.Tensor,
    mask: torch.Tensor | None = None,
    prior: str = "dust-glow-64",
    noise_sigma: float = dust_toy.NOISE_SIGMA,
    space: str = "map",
):
    """I ~ prior, d ~ N(M I, noise_sigma^2) on the observed pixels (see the module docstring)."""
    I = prior_map(MAP_SITE, data.shape[-1], data, prior, space)
    # a number (white noise) or a map of per-pixel rms (inhomogeneous noise)
    sigma = torch.as_tensor(noise_sigma, dtype=data.dtype, device=data.device)
    pyro.sample("d", MapNormal(I, sigma, mask), obs=data)
