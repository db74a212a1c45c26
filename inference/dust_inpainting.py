"""Inpaint and denoise a dust intensity map under a learned prior: copy this file and edit ``model``.

    I ~ prior                          (a trained flow / VAE / GAN prior over maps, user units)
    d = M (I + n),  n ~ N(0, noise_sigma^2)   on the observed pixels (mask = 1)

The model is the packaged ``bayessky.models.dust_inpainting`` (its docstring lists the priors:
a prior name or folder, "true" for the exact dust-toy-v1 model, "gaussian" for the Wiener
posterior; and the parametrisations ``space="map"`` / ``"latent"``); this script only restates
it so that you can change the likelihood or the prior.

    bayessky simulate dust-toy --n 1 --out demo.npz          # truth, mask and data to try
    bayessky run inference/dust_inpainting.py --data demo.npz --key data --mask demo.mask.npy
    bayessky run inference/dust_inpainting.py --data noisy.npy --engine map --set noise_sigma=0.2

Options (``--set key=value``): prior, noise_sigma, space (see the packaged model).
"""

from __future__ import annotations

import pyro
import torch

from bayessky.distributions import MapNormal
from bayessky.families import dust_toy
from bayessky.models.dust_inpainting import DEFAULTS, MAP_SITE, prior_map

__all__ = ["DEFAULTS", "MAP_SITE", "model"]


def model(data, mask=None, prior="dust-glow-64", noise_sigma=dust_toy.NOISE_SIGMA, space="map"):
    """data: observed map (n, n) (values at masked pixels are ignored); mask: 1 = observed."""
    I = prior_map(MAP_SITE, data.shape[-1], data, prior, space)  # site "I": the map
    sigma = torch.as_tensor(noise_sigma, dtype=data.dtype, device=data.device)  # number or (n, n) map
    pyro.sample("d", MapNormal(I, sigma, mask), obs=data)
