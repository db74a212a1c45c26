r"""Joint CMB + lensing + dust reconstruction from multi-frequency temperature maps.

The data model is CMBLensing.jl's :math:`d = M B L(\phi) f + n` with a dust foreground added
before the beam, one channel per frequency :math:`\nu` (all maps in uK_CMB):

.. math::
    d_\nu = M_\nu\, B_\nu \big[ L(\phi) f + A_d\, s(\nu)\, I \big] + n_\nu,
    \qquad n_\nu \sim \mathcal N(0, \sigma_\nu^2) \text{ white},

    f \sim \mathrm{GRF}(C_\ell^{TT,\,\mathrm{unlensed}}), \quad
    \phi \sim \mathrm{GRF}(C_\ell^{\phi\phi}), \quad I \sim p_\mathrm{dust}(I),

with ``L(phi)`` the spline lensing of :func:`bayessky.physics.lens`, ``B_nu`` a Gaussian beam,
``s(nu)`` the modified blackbody of :func:`bayessky.physics.modified_blackbody` in K_CMB
(``s(nu0) = 1``), and ``I`` a dimensionless dust intensity (mean ~1) scaled to ``A_d`` uK_CMB at
``nu0``. The dust is NOT lensed (it sits in front of the last-scattering surface).

Dust on the patch. ``I`` follows the ``dust-toy-v1`` specification of
:mod:`bayessky.families.dust_toy` on the patch's own grid: the toy's unit pixels ARE the patch's
pixels, so a 64 x 64, 2' patch carries a 64 x 64 dust-toy map (its spectrum, set in cycles per
box, then falls as ell^-2.8 above ell ~ 340). ``dust_amplitude`` (default 300 uK_CMB at 353 GHz,
about 0.09 MJy/sr, a clean high-latitude patch) sets the physical level; with the default
beta = 1.54, T_d = 19.6 K that is 14, 41 and 5 uK rms at 150, 220 and 90 GHz.

Dust priors (``dust_prior``):

- ``"gaussian"``: ``I = 1 + T w``, a Gaussian field with the exact mean (1) and per-mode
  spectrum of dust-toy intensity, :math:`S_I = \mathrm{fft2}[e^{0.64\,\xi_g} - 1]` with
  :math:`\xi_g = \mathrm{ifft2}(S_g)` (the log-normal covariance;
  :func:`bayessky.families.dust_toy.intensity_spectrum`).
- ``"lognormal"``: the true dust-toy-v1 model, ``I = exp(0.8 g - 0.32)``, g Gaussian: the
  oracle reference a learned prior is measured against.
- a prior name or folder (``bayessky.load_prior``), e.g. ``"dust-glow-64"``: a Glow is sampled in
  its whitened latent space, ``z ~ N(0, 1)``, ``I = T^{-1}(glow.inverse(z))`` (T the card's data
  transform, e.g. log10 + standardise); a VAE/GAN prior through ``prior.sample``; another flow
  (MAF) in pixel space with its exact density.
- ``"none"``: no dust component.

Parametrisation. The fields are sampled non-centred, in whitened coordinates:

.. math::
    f = \mathcal F^{-1} \sqrt{W_f}\, \mathcal F\, w_f, \qquad
    w_f \sim \mathrm{GRF}(S_f / W_f), \qquad
    \phi = \mathcal F^{-1} \sqrt{S_\phi}\, \mathcal F\, w_\phi, \quad w_\phi \sim \mathcal N(0, 1).

``whiten="prior"`` (default): ``W_f = S_f``, the textbook ``f = IFFT(sqrt(S_f) w_f)`` with
``w_f ~ N(0, 1)``. ``whiten="posterior"``: ``W_f = S_f / (1 + S_f q_f)`` with
``q_f = sum_nu Mbar_nu b_nu^2 / sigma_nu^2``, the Wiener variance of each mode of the unmasked,
unlensed problem, so ``w_f ~ GRF(1 + S_f q_f)`` has unit posterior scale in every mode. The
Gaussian and log-normal dust fields are whitened the same way (``q_d = A_d^2 sum Mbar s^2 b^2 /
sigma^2``). Jacobians are constant, so MAP and posterior are those of the fields themselves.

Which to use (measured with the repository's ``benchmarks/cmb_lensing.py``): at a few uK-arcmin
the data-dominated CMB modes are ~10^4-10^6 times stiffer than the prior in ``w_f`` under prior whitening, and
posterior whitening removes that, but with lensing it leaves the phi directions (at fixed f) stiff
and strongly coupled to f: joint L-BFGS from zero fields then stalls far from the mode (64^2,
seed 1, 1500 steps: -log p ends 3.4e4 ABOVE its value at the truth, r(phi) ~ 0, while with prior
whitening it ends 5.5e3 below the truth's value, r(phi) = 0.76), so the default is ``"prior"``.
For NUTS the posterior whitening allows a ~2.4x larger step (32^2), but both saturate tree
depth 8: joint HMC over (f, phi) needs the "mixed" parametrisation of
Millea et al. 2020 (sampling the lensed field), which needs an invertible lensing operator; with
``lensing=False`` use ``"posterior"``.

Sites: latent ``f_w``, ``phi_w`` (absent with ``lensing=False``), ``dust_latent`` (``dust_I_latent``
for VAE/GAN priors, ``dust_I`` for pixel-space flows); deterministic ``f`` (unlensed CMB, uK),
``phi`` (lensing potential, dimensionless), ``dust`` (dust at ``nu0``, uK_CMB); observed ``d``.

Data layout. One observation is ``(n_freq, H, W)``. ``bayessky run`` treats a 3-D array as a
STACK of separate maps, so on disk the channels are stacked along the rows, ``(n_freq * H, W)``
(key ``maps`` of the files written by :func:`save_simulation` and ``bayessky simulate cmb-lensing``);
the model accepts both layouts, and a mask of shape (H, W), (n_freq, H, W) or (n_freq * H, W).
``frequencies``, ``beam_fwhm`` and ``noise_uK_arcmin`` are model options and must describe the data:

    bayessky simulate cmb-lensing --out sim.npz --size 64 --seed 1     # prints the fit command
    bayessky run cmb-lensing --data sim.npz --engine map --set steps=1000
    bayessky run cmb-lensing --data sim.npz --engine nuts --set num_samples=100 \
        --set dust_prior='"lognormal"'

Options (``--set key=value``):
    frequencies:      channel frequencies in GHz (default (90, 150, 220)).
    pixel_size:       pixel side in arcmin (default 2); the patch side is the data's.
    beam_fwhm:        Gaussian beam FWHM in arcmin, one value or one per channel (default 1.5).
    noise_uK_arcmin:  white-noise depth, one value or one per channel (default 3).
    dust_prior:       "gaussian" (default), "lognormal", "none", or a prior name / folder.
    dust_amplitude:   A_d, uK_CMB at dust_nu0 (default 300); dust_nu0 (353), beta (1.54), T_dust (19.6).
    lensing:          infer phi (default True); False fixes phi = 0 (no lensing).
    whiten:           "prior" (default) or "posterior" (see above).
    oversample:       Fourier oversampling of the lensing interpolation (default 2).

References:
    M. Millea, E. Anderes & B. Wandelt, "Bayesian delensing of CMB temperature and
    polarization", PRD 100, 023509 (2019), arXiv:1708.06753 (joint MAP, CMBLensing.jl).
    M. Millea, E. Anderes & B. Wandelt, "Sampling-based inference of the primordial CMB and
    gravitational lensing", PRD 102, 123542 (2020), arXiv:2002.00965 (whitened/"mixed" fields).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from ..atomic import atomic_path
from ..distributions import GaussianRandomField, MapNormal
from ..families import dust_toy
from ..physics import cmb_spectra, lens, modified_blackbody
from ..sky import FlatGeometry, gaussian_beam, irfft2, rfft2, white_noise_level

__all__ = [
    "FREQUENCIES", "DEFAULTS", "MAP_SITE", "model", "simulate", "simulation_arrays", "save_simulation",
    "load_simulation",
    "Setup", "setup", "channels", "mask_channels", "dust_intensity", "dust_prior_object", "whitening",
    "truth_latents",
]

FREQUENCIES = (90.0, 150.0, 220.0)
BEAM_FWHM = 1.5          # arcmin
NOISE_UK_ARCMIN = 3.0
DUST_AMPLITUDE = 300.0   # uK_CMB at DUST_NU0
DUST_NU0 = 353.0
DUST_BETA = 1.54
DUST_T = 19.6

DEFAULTS = {"engine": "map", "steps": 2000, "num_samples": 100, "warmup_steps": 200,
            "init_strategy": "mean", "max_tree_depth": 8}
MAP_SITE = "phi"


# -- spectra and operators on the grid ------------------------------------------------------------
def _tuple(value, n: int, name: str) -> tuple[float, ...]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().reshape(-1).tolist()
    vals = [float(value)] if np.ndim(value) == 0 else [float(v) for v in value]
    vals = vals * n if len(vals) == 1 else vals
    if len(vals) != n:
        raise ValueError(f"{name}: expected one value or {n} (one per frequency), got {len(vals)}")
    if not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"{name}: values must be finite and > 0, got {vals}")
    return tuple(vals)


class Setup:
    """Everything the model needs that depends only on the options (cached per options).

    Attributes (tensors on ``device`` in ``dtype``; ``half`` = rfft half plane (H, W//2+1)):
        geometry: the patch's :class:`~bayessky.sky.FlatGeometry`.
        S_f, S_phi: per-mode spectra (H, W) of unlensed T (uK^2) and phi.
        beams, beams_full: (n_freq, half) and (n_freq, H, W) beam transfer functions.
        sigma: (n_freq,) noise rms per pixel, uK.
        mixing: (n_freq,) dust scaling ``A_d s(nu)`` (uK_CMB per unit I).
    """

    def __init__(self, n: int, pixel_size: float, frequencies, beam_fwhm, noise_uK_arcmin,
                 dust_amplitude: float, dust_nu0: float, beta: float, T_dust: float, device, dtype):
        self.geometry = g = FlatGeometry(n, pixel_size)
        spec = cmb_spectra()
        ell = np.asarray(spec.ell, dtype=float)
        self.S_f = g.per_mode_spectrum((ell, np.asarray(spec.TT, float)), device=device, dtype=dtype)
        self.S_phi = g.per_mode_spectrum((ell, np.asarray(spec.PP, float)), device=device, dtype=dtype)
        self.frequencies = tuple(float(v) for v in frequencies)
        self.beams_full = torch.stack([gaussian_beam(g, b, device=device, dtype=dtype) for b in beam_fwhm])
        self.beams = self.half(self.beams_full)
        sigma = [white_noise_level(v, g) for v in noise_uK_arcmin]
        self.sigma = torch.tensor(sigma, device=device, dtype=dtype)
        s = modified_blackbody(np.asarray(self.frequencies), beta, T_dust, dust_nu0, "K_CMB")
        self.mixing = torch.as_tensor(dust_amplitude * np.atleast_1d(s), device=device, dtype=dtype)
        self.device, self.dtype = device, dtype

    @property
    def n_freq(self) -> int:
        return len(self.frequencies)

    def half(self, s: torch.Tensor) -> torch.Tensor:
        return s[..., : self.geometry.nx // 2 + 1]

    def filter(self, x: torch.Tensor, transfer_half: torch.Tensor) -> torch.Tensor:
        """Apply a real, even Fourier-diagonal operator (values on the half plane) to (..., H, W)."""
        return irfft2(rfft2(x) * transfer_half, self.geometry.shape)

    def data_precision(self, coverage: torch.Tensor, mixing: torch.Tensor | None = None) -> torch.Tensor:
        r"""Per-mode data precision :math:`q = \sum_\nu \bar M_\nu a_\nu^2 b_\nu^2 / \sigma_\nu^2`,
        full grid (H, W); ``a = 1`` (CMB) or ``mixing`` (dust)."""
        a2 = 1.0 if mixing is None else (mixing**2)[:, None, None]
        return (coverage[:, None, None] * a2 * self.beams_full**2 / self.sigma[:, None, None] ** 2).sum(0)


@lru_cache(maxsize=16)
def _setup_cached(*key) -> Setup:
    *args, device, dtype = key
    return Setup(*args, device=torch.device(device), dtype=dtype)


def setup(n: int, pixel_size: float = 2.0, frequencies=FREQUENCIES, beam_fwhm=BEAM_FWHM,
          noise_uK_arcmin=NOISE_UK_ARCMIN, dust_amplitude: float = DUST_AMPLITUDE,
          dust_nu0: float = DUST_NU0, beta: float = DUST_BETA, T_dust: float = DUST_T, *,
          device=None, dtype: torch.dtype = torch.float64) -> Setup:
    """The cached :class:`Setup` for these options (per-channel values broadcast from scalars)."""
    freqs = tuple(float(v) for v in np.atleast_1d(np.asarray(frequencies, dtype=float)))
    if not freqs or not all(v > 0 for v in freqs):
        raise ValueError(f"frequencies: expected positive GHz values, got {frequencies!r}")
    nf = len(freqs)
    key = (int(n), float(pixel_size), freqs, _tuple(beam_fwhm, nf, "beam_fwhm"),
           _tuple(noise_uK_arcmin, nf, "noise_uK_arcmin"), float(dust_amplitude), float(dust_nu0),
           float(beta), float(T_dust), str(torch.device(device or "cpu")), dtype)
    return _setup_cached(*key)


def whitening(S: torch.Tensor, q: torch.Tensor | float, whiten: str) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(``W``, ``S / W``) for field spectrum ``S`` and data precision ``q`` (full grids).

    ``whiten="posterior"``: :math:`W = S / (1 + S q)` (the Wiener variance), ``S/W = 1 + S q``;
    ``"prior"``: ``W = S``, ``S/W = 1``. Written without dividing by ``S`` so that S = 0 modes
    (ell = 0 of the CMB) stay finite: they are simply absent from the field.
    """
    if whiten == "posterior":
        ratio = 1.0 + S * q
    elif whiten == "prior":
        ratio = torch.ones_like(S)
    else:
        raise ValueError(f"whiten: expected 'posterior' or 'prior', got {whiten!r}")
    return S / ratio, ratio


def channels(data: torch.Tensor, n_freq: int) -> torch.Tensor:
    """Bring data to (n_freq, H, W) from (n_freq, H, W), (n_freq * H, W) rows-stacked, or (H, W)."""
    if data.ndim == 3 and data.shape[0] == n_freq:
        return data
    if data.ndim == 2:
        h, w = data.shape
        if h == n_freq * w:
            return data.reshape(n_freq, w, w)
        if n_freq == 1:
            return data[None]
    raise ValueError(f"data: expected ({n_freq}, H, W) or channels stacked along rows ({n_freq} * H, W) "
                     f"for {n_freq} frequencies, got shape {tuple(data.shape)}")


def mask_channels(mask, n_freq: int, like: torch.Tensor) -> torch.Tensor | None:
    """A mask (H, W), (n_freq, H, W) or rows-stacked (n_freq * H, W) as (1 or n_freq, H, W), checked."""
    if mask is None:
        return None
    m = torch.as_tensor(mask, dtype=like.dtype, device=like.device)
    h, w = like.shape[-2:]
    if m.shape == (n_freq * h, w):
        m = m.reshape(n_freq, h, w)
    if m.shape not in ((h, w), (n_freq, h, w), (1, h, w)):
        raise ValueError(f"mask: expected shape ({h}, {w}), ({n_freq}, {h}, {w}) or ({n_freq * h}, {w}), "
                         f"got {tuple(m.shape)}")
    if bool(((m < 0) | (m > 1)).any()):
        raise ValueError("mask: values must lie in [0, 1]")
    return m if m.ndim == 3 else m[None]


# -- dust priors ----------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _load_prior(name: str, device: str):
    from ..priors import load_prior

    return load_prior(name, device=device)


def dust_prior_object(spec, device=None):
    """A loaded learned prior for ``spec`` (name, folder, or an already loaded prior object)."""
    if hasattr(spec, "distribution") or hasattr(spec, "decode"):
        return spec
    return _load_prior(str(spec), str(torch.device(device or "cpu")))


def _flow_dust(prior, n: int, like: torch.Tensor) -> torch.Tensor:
    """Dust intensity I (..., n, n) from a flow prior: latent space for a Glow, else pixel space."""
    net = prior.net
    shape = tuple(getattr(net, "shape", ()) or ())
    if shape[-2:] and tuple(shape[-2:]) != (n, n):
        raise ValueError(f"dust_prior: the prior models {tuple(shape[-2:])} maps, the data are {(n, n)}")
    if getattr(prior, "context_names", None):
        raise ValueError("dust_prior: expected an unconditional prior, got a conditional one")
    if hasattr(net, "unflatten_latents") and hasattr(net, "inverse"):
        d = int(net.dim)
        z = pyro.sample("dust_latent", dist.Normal(like.new_zeros(()), 1.0).expand([d]).to_event(1))
        lead = z.shape[:-1]
        lat = net.unflatten_latents(z.reshape(-1, d).to(prior.dtype))
        y = net.inverse(lat)
        x = prior.transform.inv(y) if prior.transform is not None else y
        return x.to(like.dtype).reshape(*lead, n, n)
    # other flows (e.g. MAF): sample the map itself under the flow's exact density
    return pyro.sample("dust_I", prior.distribution()).to(like.dtype)


def dust_intensity(dust_prior, S: Setup, coverage, whiten: str, like: torch.Tensor) -> torch.Tensor | None:
    """Draw the dust intensity I (..., H, W) from ``dust_prior`` inside the model (None for "none");
    ``coverage`` (n_freq,): observed fraction per channel, for posterior whitening."""
    n = S.geometry.nx
    if isinstance(dust_prior, str) and dust_prior == "none":
        return None
    if isinstance(dust_prior, str) and dust_prior in ("gaussian", "lognormal"):
        q = S.data_precision(coverage, S.mixing)
        if dust_prior == "gaussian":
            spec = torch.as_tensor(dust_toy.intensity_spectrum(n), dtype=like.dtype, device=like.device)
        else:  # linearised at I ~ 1: dI/dg = 0.8 I
            spec = torch.as_tensor(dust_toy.spectrum(n), dtype=like.dtype, device=like.device)
            q = q * dust_toy.AMPLITUDE**2
        W, ratio = whitening(spec, q, whiten)
        w = pyro.sample("dust_latent", GaussianRandomField(ratio))
        x = S.filter(w, S.half(W).sqrt())
        return 1.0 + x if dust_prior == "gaussian" else dust_toy.intensity(x)
    prior = dust_prior_object(dust_prior, like.device)
    if hasattr(prior, "decode"):  # VAE decoder / GAN generator: latent site "dust_I_latent"
        return prior.sample("dust_I").to(like.dtype)
    return _flow_dust(prior, n, like)


# -- the model ------------------------------------------------------------------------------------
def model(data: torch.Tensor, frequencies=FREQUENCIES, pixel_size: float = 2.0, beam_fwhm=BEAM_FWHM,
          noise_uK_arcmin=NOISE_UK_ARCMIN, mask=None, dust_prior="gaussian",
          dust_amplitude: float = DUST_AMPLITUDE, dust_nu0: float = DUST_NU0, beta: float = DUST_BETA,
          T_dust: float = DUST_T, lensing: bool = True, whiten: str = "prior", oversample: int = 2):
    """Pyro model of multi-frequency temperature maps (see the module docstring).

    Arguments:
        data: (n_freq, H, W) or rows-stacked (n_freq * H, W) maps in uK_CMB, square H = W.
        frequencies, pixel_size, beam_fwhm, noise_uK_arcmin, mask, dust_prior, dust_amplitude,
        dust_nu0, beta, T_dust, lensing, whiten, oversample: module docstring, "Options".

    Broadcasts over leading batch dimensions of the latent sites (vectorised engines).
    """
    freqs = tuple(np.atleast_1d(np.asarray(frequencies, dtype=float)).tolist())
    data = torch.as_tensor(data)
    if not data.is_floating_point():
        data = data.to(torch.get_default_dtype())
    d = channels(data, len(freqs))
    n = d.shape[-1]
    if d.shape[-2] != n:
        raise ValueError(f"data: expected square maps, got {tuple(d.shape[-2:])}")
    S = setup(n, pixel_size, freqs, beam_fwhm, noise_uK_arcmin, dust_amplitude, dust_nu0, beta, T_dust,
              device=d.device, dtype=d.dtype)
    m = mask_channels(mask, S.n_freq, d)
    coverage = (m.mean(dim=(-2, -1)).expand(S.n_freq) if m is not None
                else torch.ones(S.n_freq, dtype=d.dtype, device=d.device))

    W_f, ratio_f = whitening(S.S_f, S.data_precision(coverage), whiten)
    f_w = pyro.sample("f_w", GaussianRandomField(ratio_f))
    f = pyro.deterministic("f", S.filter(f_w, S.half(W_f).sqrt()))
    if lensing:
        phi_w = pyro.sample("phi_w", dist.Normal(d.new_zeros(()), 1.0).expand([n, n]).to_event(2))
        phi = pyro.deterministic("phi", S.filter(phi_w, S.half(S.S_phi).sqrt()))
        sky = lens(f, phi, S.geometry, oversample=int(oversample))
    else:
        sky = f
    sky = sky.unsqueeze(-3)  # (..., 1, H, W): one sky, seen in every channel
    I = dust_intensity(dust_prior, S, coverage, whiten, d)
    if I is not None:
        pyro.deterministic("dust", float(dust_amplitude) * I)
        sky = sky + S.mixing[:, None, None] * I.unsqueeze(-3)
    signal = S.filter(sky, S.beams)
    sigma = S.sigma[:, None, None]
    return pyro.sample("d", MapNormal(signal, sigma, m).to_event(1), obs=d)


# -- helpers for scripts, tests and benchmarks ----------------------------------------------------------
def _inverse_filter(S: Setup, x, W: torch.Tensor) -> torch.Tensor:
    """w = F^-1 W^(-1/2) F x on the modes where W > 0 (the field has no power elsewhere: w = 0)."""
    half = S.half(W)
    inv = torch.where(half > 0, half.clamp_min(1e-300).rsqrt(), torch.zeros((), dtype=half.dtype))
    return S.filter(torch.as_tensor(x, dtype=half.dtype, device=half.device), inv)


def truth_latents(sim: dict, dust_prior="gaussian", whiten: str = "prior", mask=None) -> dict:
    """The latent-site values (``f_w``, ``phi_w``, ``dust_latent``) that reproduce a simulation's
    truths under the model's parametrisation, e.g. to evaluate log p(truth, data) or to start a
    chain there. For a Glow dust prior, ``dust_latent`` is the flow's forward pass of the true
    intensity. Modes the model cannot represent (S = 0, or the true f's ell = 0) are dropped."""
    o = sim["options"]
    data = torch.as_tensor(sim["data"])
    S = setup(data.shape[-1], o["pixel_size"], o["frequencies"], o["beam_fwhm"], o["noise_uK_arcmin"],
              o["dust_amplitude"], o["dust_nu0"], o["beta"], o["T_dust"], dtype=data.dtype)
    m = mask_channels(mask if mask is not None else sim.get("mask"), S.n_freq, data)
    cov = m.mean(dim=(-2, -1)).expand(S.n_freq) if m is not None else torch.ones(S.n_freq, dtype=data.dtype)
    W_f, _ = whitening(S.S_f, S.data_precision(cov), whiten)
    out = {"f_w": _inverse_filter(S, sim["f"], W_f), "phi_w": _inverse_filter(S, sim["phi"], S.S_phi)}
    I = torch.as_tensor(sim["dust_I"], dtype=data.dtype)
    n = data.shape[-1]
    if isinstance(dust_prior, str) and dust_prior in ("gaussian", "lognormal"):
        q = S.data_precision(cov, S.mixing)
        if dust_prior == "gaussian":
            W_d, _ = whitening(torch.as_tensor(dust_toy.intensity_spectrum(n), dtype=data.dtype), q, whiten)
            out["dust_latent"] = _inverse_filter(S, I - 1.0, W_d)
        else:
            spec = torch.as_tensor(dust_toy.spectrum(n), dtype=data.dtype)
            W_d, _ = whitening(spec, q * dust_toy.AMPLITUDE**2, whiten)
            out["dust_latent"] = _inverse_filter(S, dust_toy.log_intensity_to_g(I), W_d)
    elif not (isinstance(dust_prior, str) and dust_prior == "none"):
        prior = dust_prior_object(dust_prior)
        net = prior.net
        if not hasattr(net, "flatten_latents"):
            raise ValueError("dust_prior: truth latents need a Glow prior (forward pass to its latents)")
        with torch.no_grad():
            x = I.to(prior.dtype)[None, None]
            y = prior.transform(x) if prior.transform is not None else x
            latents, _ = net(y)
            out["dust_latent"] = net.flatten_latents(latents)[0].to(data.dtype)
    return out


# -- simulation -------------------------------------------------------------------------------------
def simulate(n_side: int = 64, pixel_size: float = 2.0, frequencies=FREQUENCIES, beam_fwhm=BEAM_FWHM,
             noise_uK_arcmin=NOISE_UK_ARCMIN, dust_amplitude: float = DUST_AMPLITUDE,
             dust_nu0: float = DUST_NU0, beta: float = DUST_BETA, T_dust: float = DUST_T, mask=None,
             seed: int = 0, oversample: int = 4, lensing: bool = True, dust: bool = True) -> dict:
    """Draw one data set from the model's generative process, with its truths (numpy float64).

    The truth is drawn exactly as the model assumes: f and phi Gaussian with the CAMB spectra,
    dust ``I`` a dust-toy-v1 map (``dust_toy.sample``), lensing with ``oversample`` (default 4,
    finer than the model's 2, so the fit sees a slightly more accurate lensing than it uses).

    Arguments:
        mask: None, ``"point"`` (dust-toy point-source discs, ~10 % of pixels, same in every
            channel), or an array (H, W) / (n_freq, H, W), 1 = observed.
        seed: one ``numpy.random.default_rng(seed)`` drives every draw.

    Returns:
        dict with ``data`` (n_freq, H, W) in uK_CMB, ``f``, ``phi``, ``f_lensed``, ``dust`` (uK_CMB at
        ``dust_nu0``), ``dust_I``, ``noise`` (n_freq, H, W), ``mask`` (or None) and ``options``
        (the model options that describe the data).
    """
    rng = np.random.default_rng(seed)
    S = setup(n_side, pixel_size, frequencies, beam_fwhm, noise_uK_arcmin, dust_amplitude, dust_nu0,
              beta, T_dust)
    g = S.geometry

    def grf(spec):
        w = torch.as_tensor(rng.standard_normal(g.shape))
        return S.filter(w, S.half(spec).sqrt())

    f = grf(S.S_f)
    phi = grf(S.S_phi) if lensing else torch.zeros(g.shape, dtype=torch.float64)
    f_len = lens(f, phi, g, oversample=int(oversample)) if lensing else f
    I, _ = dust_toy.sample(1, n_side, seed=rng, return_g=True)
    I = torch.as_tensor(I[0]) if dust else torch.zeros(g.shape, dtype=torch.float64)
    sky = f_len[None] + S.mixing[:, None, None] * I[None]
    signal = S.filter(sky, S.beams)
    noise = S.sigma[:, None, None] * torch.as_tensor(rng.standard_normal((S.n_freq, *g.shape)))
    if isinstance(mask, str):
        if mask != "point":
            raise ValueError(f"mask: expected None, 'point' or an array, got {mask!r}")
        mask = dust_toy.point_source_mask(n_side, seed=rng)
    m = None if mask is None else mask_channels(mask, S.n_freq, signal).expand(S.n_freq, *g.shape)
    data = signal + noise
    if m is not None:
        data = m * data
    options = {"frequencies": list(S.frequencies), "pixel_size": float(pixel_size),
               "beam_fwhm": list(_tuple(beam_fwhm, S.n_freq, "beam_fwhm")),
               "noise_uK_arcmin": list(_tuple(noise_uK_arcmin, S.n_freq, "noise_uK_arcmin")),
               "dust_amplitude": float(dust_amplitude), "dust_nu0": float(dust_nu0), "beta": float(beta),
               "T_dust": float(T_dust)}
    if not dust:
        options["dust_prior"] = "none"
    if not lensing:
        options["lensing"] = False
    out = {"data": data, "f": f, "phi": phi, "f_lensed": f_len, "dust": dust_amplitude * I, "dust_I": I,
           "noise": noise, "mask": m}
    out = {k: (None if v is None else v.numpy()) for k, v in out.items()}
    out["options"] = options
    out["seed"] = int(seed)
    return out


def simulation_arrays(sim: dict) -> dict[str, np.ndarray]:
    """The arrays of a simulation file: ``maps`` = data stacked along rows (n_freq * H, W) for
    ``bayessky run``, plus ``channels`` (n_freq, H, W), the truths, ``mask`` and ``mask_rows`` (if
    masked), ``options`` (JSON string) and ``seed``. Arrays only: ``np.load`` needs no pickle."""
    data = sim["data"]
    nf, h, w = data.shape
    arrays = {"maps": data.reshape(nf * h, w), "channels": data,
              "options": np.array(json.dumps(sim["options"])), "seed": np.array(sim.get("seed", -1))}
    for k in ("f", "phi", "f_lensed", "dust", "dust_I", "noise"):
        arrays[k] = sim[k]
    if sim.get("mask") is not None:
        arrays["mask"] = sim["mask"]
        arrays["mask_rows"] = sim["mask"].reshape(nf * h, w)
    return arrays


def save_simulation(path, sim: dict) -> Path:
    """Write :func:`simulation_arrays` as .npz, atomically (:func:`bayessky.atomic.atomic_path`:
    an interrupted write leaves the old file or none)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no suffix
        np.savez(f, **simulation_arrays(sim))
    return path


def load_simulation(path) -> dict:
    """Read a file written by :func:`save_simulation` (no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["data"] = out.pop("channels")
    out["options"] = json.loads(str(out["options"]))
    out.setdefault("mask", None)
    return out
