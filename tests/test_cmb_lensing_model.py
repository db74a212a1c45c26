"""bayessky.models.cmb_lensing (and its copy-and-edit script inference/cmb_lensing.py) against
independent computations on tiny patches.

References: the joint log density rebuilt in numpy/scipy (dense Gaussian covariances from
explicit cosine sums or Cholesky log-pdfs, beams and dust SEDs written out by hand, lensing as a
brute-force Fourier series at the displaced points); 5-point finite differences for the phi
gradient; the dense Wiener filter for the MAP of the linear (phi = 0, no dust) problem; the
Monte Carlo spectrum of dust-toy intensity for the Gaussian dust prior.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from scipy import stats

from bayessky.families import dust_toy
from bayessky.physics import cmb_spectra

_SCRIPT = Path(__file__).resolve().parents[1] / "inference" / "cmb_lensing.py"
ARCMIN = math.pi / 180 / 60
H, KB, TCMB = 6.62607015e-34, 1.380649e-23, 2.7255


@pytest.fixture(scope="module")
def cl():
    from bayessky.models import cmb_lensing

    return cmb_lensing


def _script():
    spec = importlib.util.spec_from_file_location("cmb_lensing_script", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny FFTs: threads only oversubscribe the shared CI cores
    yield
    torch.set_num_threads(n)


# -- hand-written reference pieces (numpy) ---------------------------------------------------------
def kgrid(n, pix_arcmin):
    k = 2 * np.pi * np.fft.fftfreq(n, d=pix_arcmin * ARCMIN)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return ky, kx


def spectrum_on_grid(cl_table, n, pix_arcmin):
    ky, kx = kgrid(n, pix_arcmin)
    ell = np.sqrt(kx**2 + ky**2)
    return np.interp(ell, np.arange(len(cl_table)), cl_table, left=0, right=0) / (pix_arcmin * ARCMIN) ** 2


def beam_on_grid(fwhm, n, pix_arcmin):
    ky, kx = kgrid(n, pix_arcmin)
    sig = fwhm * ARCMIN / np.sqrt(8 * np.log(2))
    return np.exp(-0.5 * (kx**2 + ky**2) * sig**2)


def mbb_kcmb(nu, beta=1.54, td=19.6, nu0=353.0):
    """Modified blackbody ratio nu -> nu0 in K_CMB, from Planck's law written out."""
    def planck_shape(v, t):  # nu^3 / (e^x - 1), constants cancel in ratios
        return v**3 / np.expm1(H * v * 1e9 / (KB * t))

    def dbdt_shape(v):  # nu^4 e^y / (e^y - 1)^2
        y = H * v * 1e9 / (KB * TCMB)
        return v**4 * np.exp(y) / np.expm1(y) ** 2

    inten = (nu / nu0) ** beta * planck_shape(nu, td) / planck_shape(nu0, td)
    return inten * dbdt_shape(nu0) / dbdt_shape(nu)


def fourier_filter(x, transfer):
    return np.real(np.fft.ifft2(np.fft.fft2(x) * transfer))


def dense_circulant(spec):
    """Dense covariance (N, N) of a stationary field with per-mode spectrum ``spec`` from the
    explicit cosine sum C_ij = (1/N) sum_k S_k cos(k . (x_i - x_j)) (no FFT)."""
    n = spec.shape[0]
    idx = np.arange(n)
    yy, xx = np.meshgrid(idx, idx, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1)
    kk = 2 * np.pi * np.fft.fftfreq(n)
    ky, kx = np.meshgrid(kk, kk, indexing="ij")
    kvec = np.stack([ky.ravel(), kx.ravel()], 1)
    phase = pos @ kvec.T  # (Npix, Nmodes)
    c, s = np.cos(phase), np.sin(phase)
    sv = spec.ravel()
    # cos(a - b) = cos a cos b + sin a sin b
    return ((c * sv) @ c.T + (s * sv) @ s.T) / sv.size


def lens_brute_force(f, phi, pix_arcmin):
    """Exact lensing of a band-limited periodic map (odd n: no Nyquist ambiguity):
    f~(x) = sum_k F_k exp(i k . (x + grad phi(x))) / N, grad phi by spectral differentiation."""
    n = f.shape[0]
    assert n % 2 == 1
    ky, kx = kgrid(n, pix_arcmin)
    P = np.fft.fft2(phi)
    dx = np.real(np.fft.ifft2(1j * kx * P))
    dy = np.real(np.fft.ifft2(1j * ky * P))
    pos = np.arange(n) * pix_arcmin * ARCMIN
    py = pos[:, None] + dy
    px = pos[None, :] + dx
    F = np.fft.fft2(f)
    phase = py.ravel()[:, None] * ky.ravel()[None, :] + px.ravel()[:, None] * kx.ravel()[None, :]
    return np.real(np.exp(1j * phase) @ F.ravel()).reshape(n, n) / f.size


def reference_log_density(opts, w_f, w_phi, w_d, data, mask, lensing=True):
    """log p(w_f, w_phi, w_d, data) of the model, Gaussian dust prior, by hand in numpy/scipy;
    ``lensing=False``: the sky is f itself (phi = 0), only phi's prior term is kept."""
    n, pix = data.shape[-1], opts["pixel_size"]
    freqs = np.asarray(opts["frequencies"], float)
    beams = [beam_on_grid(b, n, pix) for b in opts["beam_fwhm"]]
    sig = np.asarray(opts["noise_uK_arcmin"], float) / pix
    spec = cmb_spectra()
    S_f = spectrum_on_grid(spec.TT, n, pix)
    S_phi = spectrum_on_grid(spec.PP, n, pix)
    cov = mask.mean(axis=(-2, -1)) * np.ones(len(freqs))
    a = opts["dust_amplitude"] * mbb_kcmb(freqs)
    q_f = sum(c * b**2 / s**2 for c, b, s in zip(cov, beams, sig))
    q_d = sum(c * ai**2 * b**2 / s**2 for c, ai, b, s in zip(cov, a, beams, sig))
    # dust-toy intensity spectrum from the log-normal covariance exp(0.64 xi_g) - 1, by a cosine sum
    xi_g = dense_circulant(dust_toy.spectrum(n))[0].reshape(n, n)
    S_I = np.real(np.fft.fft2(np.expm1(0.64 * xi_g)))
    lp = 0.0
    fields = {}
    for name, w, S, q in (("f", w_f, S_f, q_f), ("d", w_d, S_I, q_d)):
        ratio = 1 + S * q if opts["whiten"] == "posterior" else np.ones_like(S)
        W = S / ratio
        C = dense_circulant(ratio)
        lp += stats.multivariate_normal(np.zeros(n * n), C).logpdf(w.ravel())
        fields[name] = fourier_filter(w, np.sqrt(W))
    sky = fields["f"]
    if w_phi is not None:
        lp += stats.norm.logpdf(w_phi).sum()
        if lensing:
            sky = lens_brute_force(sky, fourier_filter(w_phi, np.sqrt(S_phi)), pix)
    dust = 1 + fields["d"]
    for i in range(len(freqs)):
        sig_map = fourier_filter(sky + a[i] * dust, beams[i])
        obs = mask[i] > 0
        lp += stats.norm.logpdf(data[i][obs], sig_map[obs], sig[i]).sum()
    return lp


def model_log_density(cl, values, data, **opts):
    vals = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in values.items()}
    tr = poutine.trace(poutine.condition(cl.model, vals)).get_trace(torch.as_tensor(data), **opts)
    return tr.log_prob_sum(), tr


def _setup_case(n, seed, whiten, lensing=True):
    rng = np.random.default_rng(seed)
    opts = {"frequencies": [150.0, 220.0], "pixel_size": 2.0, "beam_fwhm": [2.0, 1.4],
            "noise_uK_arcmin": [8.0, 15.0], "dust_amplitude": 300.0, "whiten": whiten}
    mask = np.ones((2, n, n))
    mask[:, 2:4, 3:6] = 0.0
    mask[1, 7, :] = 0.0
    data = rng.normal(0, 60, (2, n, n))
    # w in the posterior scaling is wide for data-dominated modes; any point checks the density
    values = {"f_w": rng.normal(0, 3, (n, n)), "dust_latent": rng.normal(0, 1, (n, n))}
    if lensing:
        values["phi_w"] = rng.normal(0, 1, (n, n))
    return opts, mask, data, values


# -- tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("whiten", ["posterior", "prior"])
def test_log_density_phi_zero_vs_dense(cl, whiten):
    """phi = 0 (lensing is the identity): the model's joint log density equals the dense
    numpy/scipy one to float64 round-off (measured difference 0.0 on -8.9e3 / -1.5e4; the
    tolerance 1e-9 relative allows for other BLAS/FFT builds)."""
    n = 8
    opts, mask, data, values = _setup_case(n, 0, whiten)
    values["phi_w"] = np.zeros((n, n))
    lp, tr = model_log_density(cl, values, data, mask=mask, **opts)
    ref = reference_log_density(opts, values["f_w"], values["phi_w"], values["dust_latent"], data, mask,
                                lensing=False)
    assert abs(float(lp) - ref) < 1e-9 * abs(ref) + 1e-8
    # phi = 0 lenses f to itself: the likelihood's mean is beam_i * (f + mbb_i * dust), built in
    # numpy from the trace's f and dust sites (measured difference 4e-14 on maps of ~60 uK)
    f, dust = tr.nodes["f"]["value"].numpy(), tr.nodes["dust"]["value"].numpy()
    mix = mbb_kcmb(np.asarray(opts["frequencies"], float))
    signal = tr.nodes["d"]["fn"].base_dist.loc.numpy()
    for i, fwhm in enumerate(opts["beam_fwhm"]):
        ref_signal = fourier_filter(f + mix[i] * dust, beam_on_grid(fwhm, n, opts["pixel_size"]))
        np.testing.assert_allclose(signal[i], ref_signal, rtol=0, atol=1e-9)


def test_log_density_with_lensing_vs_brute_force(cl):
    """A prior draw of phi: lensing by the exact Fourier series at the displaced points. The
    model uses cubic-spline lensing with 8x Fourier oversampling; its error (measured 1.2e-4 uK
    max, 1.6e-5 of the map rms) moves the log density by 1.3e-8 relative, against a 1e-6
    tolerance; leaving lensing out moves it by 7.5e-3 (checked: the test is sensitive)."""
    n = 15  # odd: the band-limited interpolant has no Nyquist ambiguity
    opts, mask, data, values = _setup_case(n, 1, "posterior")
    lp, tr = model_log_density(cl, values, data, mask=mask, oversample=8, **opts)
    ref = reference_log_density(opts, values["f_w"], values["phi_w"], values["dust_latent"], data, mask)
    # make sure lensing actually changed the density by much more than the tolerance
    unlensed = {**values, "phi_w": np.zeros((n, n))}
    lp0, _ = model_log_density(cl, unlensed, data, mask=mask, oversample=8, **opts)
    assert abs(float(lp0) - ref) > 1e3 * 1e-6 * abs(ref)
    assert abs(float(lp) - ref) < 1e-6 * abs(ref)


def test_gradient_phi_vs_finite_differences(cl):
    """d log p / d w_phi from autograd vs a 5-point central difference along 3 random
    directions (truncation ~ h^4 f^(5), round-off ~ 1e-16 |lp| / h; measured relative error
    <= 3e-10, tolerance 1e-6)."""
    n = 16
    opts, mask, data, values = _setup_case(n, 2, "posterior")
    base = {k: torch.as_tensor(v) for k, v in values.items()}
    w = base["phi_w"].clone().requires_grad_(True)

    def logp(phi_w):
        lp, _ = model_log_density(cl, {**base, "phi_w": phi_w}, data, mask=mask, **opts)
        return lp

    (grad,) = torch.autograd.grad(logp(w), w)
    rng = np.random.default_rng(5)
    h = 1e-3
    for _ in range(3):
        v = torch.as_tensor(rng.normal(size=(n, n)))
        with torch.no_grad():
            fd = (-logp(w + 2 * h * v) + 8 * logp(w + h * v) - 8 * logp(w - h * v)
                  + logp(w - 2 * h * v)) / (12 * h)
        ad = float((grad * v).sum())
        assert abs(ad - float(fd)) < 1e-6 * abs(ad) + 1e-6, (ad, float(fd))


@pytest.mark.parametrize("whiten", ["posterior", "prior"])
def test_map_equals_dense_wiener_filter(cl, whiten):
    """No lensing, no dust, masked two-channel data without a noise realisation (d = M B f):
    the MAP of f equals the Wiener filter C A^T (A C A^T + N)^-1 d, A = observed rows of the
    beams, built densely from cosine sums. L-BFGS stops at gradient tolerance 1e-10: measured
    max deviation 3.7e-9 (posterior whitening, 22 evaluations) and 1.2e-7 (prior whitening, 356
    evaluations) of the rms of f_WF; tolerance 1e-5."""
    import bayessky.infer as bi

    n, pix = 12, 2.0
    rng = np.random.default_rng(3)
    opts = {"frequencies": [150.0, 220.0], "pixel_size": pix, "beam_fwhm": [2.5, 1.5],
            "noise_uK_arcmin": [10.0, 20.0], "whiten": whiten, "lensing": False, "dust_prior": "none"}
    S_f = spectrum_on_grid(cmb_spectra().TT, n, pix)
    C = dense_circulant(S_f)
    Bs = [dense_circulant(beam_on_grid(b, n, pix)) for b in opts["beam_fwhm"]]
    f_true = np.linalg.cholesky(C + 1e-9 * np.trace(C) / n**2 * np.eye(n * n)) @ rng.normal(size=n * n)
    mask = np.ones((n, n))
    mask[3:6, 4:8] = 0.0
    obs = mask.ravel() > 0
    data = np.stack([(B @ f_true).reshape(n, n) * mask for B in Bs])
    A = np.concatenate([B[obs] for B in Bs])
    noise = np.concatenate([np.full(obs.sum(), (s / pix) ** 2) for s in opts["noise_uK_arcmin"]])
    d_obs = np.concatenate([dd.ravel()[obs] for dd in data])
    f_wf = C @ A.T @ np.linalg.solve(A @ C @ A.T + np.diag(noise), d_obs)

    pyro.clear_param_store()
    idata = bi.map(cl.model, torch.as_tensor(data), steps=600, init_strategy="mean", mask=mask, **opts)
    f_map = idata.posterior["f"].values[0, 0].ravel()
    assert np.abs(f_map - f_wf).max() < 1e-5 * f_wf.std()


def test_gaussian_dust_spectrum_vs_monte_carlo(cl):
    """S_I (the Gaussian dust prior's per-mode spectrum, k = 0 included) vs the empirical
    E|fft2(I - 1)|^2 / N of 40000 dust-toy-v1 maps (8 x 8). Each mode's estimate has relative
    std ~ sqrt(2 / 40000) = 0.7 % times a log-normal kurtosis factor; measured max 1.4 %, mean
    over modes 0.04 %: tolerances 6 % and 1.5 %."""
    n = 8
    I = dust_toy.sample(40000, n, seed=11)
    X = np.fft.fft2(I - 1.0)
    emp = (np.abs(X) ** 2).mean(0) / n**2
    s = dust_toy.intensity_spectrum(n)
    rel = emp / s - 1
    assert np.abs(rel).max() < 0.06
    assert abs(emp.mean() / s.mean() - 1) < 0.015


def test_learned_flow_dust_in_latent_space(cl):
    """A Glow prior (random weights, log10 transform) in the model: the dust map the model makes
    from the latent z maps back to z under the flow's FORWARD pass (an independent code path),
    and the joint density is sum log N(z) + the Gaussian likelihood written out by hand."""
    from bayessky.nn import Glow
    from bayessky.priors import FlowPrior

    n, pix = 8, 2.0
    torch.manual_seed(0)
    net = Glow((1, n, n), levels=2, steps=1, hidden=8).double().eval()
    net.requires_grad_(False)
    prior = FlowPrior(net, {}, transform=[{"name": "log10"}])
    rng = np.random.default_rng(4)
    z = rng.normal(size=n * n)
    opts = {"frequencies": [220.0], "pixel_size": pix, "beam_fwhm": 2.0, "noise_uK_arcmin": 20.0,
            "lensing": False, "dust_prior": prior, "dust_amplitude": 300.0, "whiten": "posterior"}
    data = rng.normal(0, 60, (1, n, n))
    f_w = rng.normal(size=(n, n))
    lp, tr = model_log_density(cl, {"f_w": f_w, "dust_latent": z}, data, **opts)
    dust = tr.nodes["dust"]["value"].numpy()
    I = dust / 300.0
    latents, _ = net(torch.log10(torch.as_tensor(I))[None, None])
    assert np.allclose(net.flatten_latents(latents).numpy().ravel(), z, atol=1e-8)
    # reference: prior of f_w (dense), N(z), and the one-channel likelihood
    S_f = spectrum_on_grid(cmb_spectra().TT, n, pix)
    b = beam_on_grid(2.0, n, pix)
    sig = 20.0 / pix
    ratio = 1 + S_f * b**2 / sig**2
    f = fourier_filter(f_w, np.sqrt(S_f / ratio))
    ref = stats.multivariate_normal(np.zeros(n * n), dense_circulant(ratio)).logpdf(f_w.ravel())
    ref += stats.norm.logpdf(z).sum()
    model_map = fourier_filter(f + 300.0 * mbb_kcmb(220.0) * I, b)
    ref += stats.norm.logpdf(data[0], model_map, sig).sum()
    assert abs(float(lp) - ref) < 1e-9 * abs(ref)


def test_channels_layouts_and_errors(cl):
    """Rows-stacked (n_freq * H, W) data equal the (n_freq, H, W) layout; bad shapes refuse in one line."""
    x = torch.arange(3 * 4 * 4, dtype=torch.float64).reshape(3, 4, 4)
    assert torch.equal(cl.channels(x.reshape(12, 4), 3), x)
    assert torch.equal(cl.channels(x, 3), x)
    with pytest.raises(ValueError, match="data: expected"):
        cl.channels(x.reshape(6, 8), 3)
    with pytest.raises(ValueError, match="beam_fwhm"):
        cl.setup(8, frequencies=(90, 150), beam_fwhm=(1.0, 2.0, 3.0))


@pytest.mark.parametrize("dust_prior", ["gaussian", "lognormal"])
def test_script_is_the_packaged_model(cl, dust_prior):
    # the copy-and-edit script restates the packaged model: the same log joint at the same values
    script = _script()
    sim = cl.simulate(n_side=8, seed=3, mask="point")
    data = torch.as_tensor(sim["data"])
    opts = {**sim["options"], "dust_prior": dust_prior, "mask": sim["mask"]}
    vals = cl.truth_latents(sim, dust_prior=dust_prior)
    lp = []
    for fn in (cl.model, script.model):
        with torch.no_grad():
            tr = poutine.trace(poutine.condition(fn, vals)).get_trace(data, **opts)
        lp.append(float(tr.log_prob_sum()))
    assert lp[0] == pytest.approx(lp[1], rel=1e-12)
