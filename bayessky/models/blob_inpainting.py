r"""Inpaint a blob image (point-source-like Gaussian blobs) under a flow prior trained on noisy images.

.. math::
    x \sim p_\mathrm{flow}(x), \qquad d = M\,(x + n), \qquad
    n \sim \mathcal N(0, \sigma^2 - \tau^2) \text{ white},

with ``M`` a 0/1 mask (1 = observed). Blob images (:mod:`bayessky.families.blobs`) are exactly
zero away from the blobs and have no density on the full pixel space, so their flow priors are
trained on ``x + tau * eps``, ``eps ~ N(0, 1)`` (``tau`` = the prior card's ``data.train_noise``,
0.02 for the shipped ``blob-glow-64``): ``p_flow`` is the density of the images blurred by that
noise. Of data with total noise rms ``sigma`` (> tau), the flow already carries ``tau``, so the
likelihood uses the remaining variance ``sigma^2 - tau^2`` and the data model is exact.

This is the model of :mod:`bayessky.models.dust_inpainting` with a blob prior and this
likelihood; its sites are the same (the image is the deterministic site ``"I"``, sampled in the
flow's pixel space ``"I_net"`` or its latent ``"I_latent"``).

Arguments of :func:`model`:
    data: observed image (n, n) (values at masked pixels are ignored).
    mask: (n, n) 0/1, 1 = observed; None = all observed.
    prior: a shipped prior name or folder (default ``"blob-glow-64"``), or a loaded prior.
    noise_sigma: total noise rms per pixel of the data (default 0.05), > the prior's train_noise.
    space: ``"map"`` (default) or ``"latent"``, as in :mod:`bayessky.models.dust_inpainting`.
"""

from __future__ import annotations

import math

import torch

from . import dust_inpainting

__all__ = ["DEFAULTS", "MAP_SITE", "model", "train_noise", "likelihood_sigma"]

DEFAULTS = dict(dust_inpainting.DEFAULTS)
MAP_SITE = dust_inpainting.MAP_SITE
NOISE_SIGMA = 0.05


def train_noise(prior) -> float:
    """The noise rms ``tau`` a prior was trained with (its card's ``data.train_noise``; 0 if none)."""
    return float(((getattr(prior, "card", None) or {}).get("data") or {}).get("train_noise") or 0.0)


def likelihood_sigma(noise_sigma, tau: float):
    """``sqrt(noise_sigma^2 - tau^2)``: the noise the likelihood must add to the prior's own."""
    if isinstance(noise_sigma, (int, float)):
        if not noise_sigma > tau:
            raise ValueError(f"noise_sigma: must exceed the prior's train_noise {tau}, got {noise_sigma}")
        return math.sqrt(noise_sigma**2 - tau**2)
    s = torch.as_tensor(noise_sigma)
    if not bool((s > tau).all()):
        raise ValueError(f"noise_sigma: must exceed the prior's train_noise {tau} everywhere")
    return (s.square() - tau**2).sqrt()


def model(
    data: torch.Tensor,
    mask: torch.Tensor | None = None,
    prior: str = "blob-glow-64",
    noise_sigma: float = NOISE_SIGMA,
    space: str = "map",
):
    """x ~ flow prior, d ~ N(M x, noise_sigma^2 - tau^2) on the observed pixels (module docstring)."""
    tau = train_noise(dust_inpainting.learned_prior(prior, data.device))
    sigma = likelihood_sigma(noise_sigma, tau)
    return dust_inpainting.model(data, mask=mask, prior=prior, noise_sigma=sigma, space=space)
