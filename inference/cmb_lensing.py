r"""Joint CMB + lensing + dust reconstruction from multi-frequency maps: copy this file and edit ``model``.

    d_nu = M_nu B_nu [L(phi) f + A_d s(nu) I] + n_nu,   n_nu ~ N(0, sigma_nu^2) white,
    f ~ GRF(C_l^TT unlensed),  phi ~ GRF(C_l^phiphi),  I ~ p_dust(I)

The model is the packaged ``bayessky.models.cmb_lensing`` (its docstring gives the
parametrisation, the dust priors, the data layout and every option); this script restates its
last lines -- sky, beam, noise -- so that you can change the instrument or add a component,
reusing its building blocks (``setup``, ``channels``, ``whitening``, the dust priors).

    bayessky simulate cmb-lensing --out sim.npz --size 64 --seed 1      # prints the fit command
    bayessky run inference/cmb_lensing.py --data sim.npz --engine map --set steps=1000
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from bayessky.distributions import GaussianRandomField, MapNormal
from bayessky.models import cmb_lensing as cl
from bayessky.physics import lens

DEFAULTS = cl.DEFAULTS
MAP_SITE = cl.MAP_SITE


def model(data, frequencies=cl.FREQUENCIES, pixel_size=2.0, beam_fwhm=cl.BEAM_FWHM,
          noise_uK_arcmin=cl.NOISE_UK_ARCMIN, mask=None, dust_prior="gaussian",
          dust_amplitude=cl.DUST_AMPLITUDE, dust_nu0=cl.DUST_NU0, beta=cl.DUST_BETA, T_dust=cl.DUST_T,
          lensing=True, whiten="prior", oversample=2):
    """data: (n_freq, H, W) or rows-stacked (n_freq * H, W) maps in uK_CMB (see the packaged model)."""
    freqs = tuple(np.atleast_1d(np.asarray(frequencies, dtype=float)).tolist())
    d = cl.channels(torch.as_tensor(data), len(freqs))
    n = d.shape[-1]
    S = cl.setup(n, pixel_size, freqs, beam_fwhm, noise_uK_arcmin, dust_amplitude, dust_nu0, beta,
                 T_dust, device=d.device, dtype=d.dtype)
    m = cl.mask_channels(mask, S.n_freq, d)
    coverage = (m.mean(dim=(-2, -1)).expand(S.n_freq) if m is not None
                else torch.ones(S.n_freq, dtype=d.dtype, device=d.device))
    # CMB f and lensing potential phi, sampled whitened (non-centred)
    W_f, ratio_f = cl.whitening(S.S_f, S.data_precision(coverage), whiten)
    f_w = pyro.sample("f_w", GaussianRandomField(ratio_f))
    f = pyro.deterministic("f", S.filter(f_w, S.half(W_f).sqrt()))
    sky = f
    if lensing:
        phi_w = pyro.sample("phi_w", dist.Normal(d.new_zeros(()), 1.0).expand([n, n]).to_event(2))
        phi = pyro.deterministic("phi", S.filter(phi_w, S.half(S.S_phi).sqrt()))
        sky = lens(f, phi, S.geometry, oversample=int(oversample))
    sky = sky.unsqueeze(-3)  # one sky, seen in every channel
    I = cl.dust_intensity(dust_prior, S, coverage, whiten, d)  # None for dust_prior="none"
    if I is not None:
        pyro.deterministic("dust", float(dust_amplitude) * I)
        sky = sky + S.mixing[:, None, None] * I.unsqueeze(-3)
    # beam per channel, white noise, mask
    return pyro.sample("d", MapNormal(S.filter(sky, S.beams), S.sigma[:, None, None], m).to_event(1), obs=d)
