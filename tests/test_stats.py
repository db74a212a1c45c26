"""Summary statistics against closed forms (Tomita, discs, blobs), numpy and scipy.ndimage."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.special import erf, erfc

from bayessky.sky import FlatGeometry
from bayessky.stats import (
    find_peaks,
    minkowski_functionals,
    peak_counts,
    peak_mask,
    pixel_pdf,
    power_spectrum,
    radial_profile,
    stacked_peaks,
)


def _grf(n, s, count, seed):
    """Periodic GRF with S(k) ~ exp(-k^2 s^2) (k in rad/pixel), zero mean mode; plus its spectrum."""
    k = 2 * np.pi * np.fft.fftfreq(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    S = np.exp(-k2 * s * s)
    S[0, 0] = 0.0
    fk = np.fft.fft2(np.random.default_rng(seed).standard_normal((count, n, n))) * np.sqrt(S)
    return np.fft.ifft2(fk).real, fk, k2


# -- power spectrum and PDF ------------------------------------------------------------------------
def test_power_spectrum_of_white_noise_in_pixel_units_and_kinds():
    x = np.random.default_rng(0).normal(0.0, 2.0, (20, 64, 64))
    k, p, counts = power_spectrum(x, bins=6)
    assert isinstance(p, np.ndarray) and p.shape == (20, 6)
    se = 4.0 * np.sqrt(2 / (20 * counts))  # |X_k|^2 exponential, half the modes independent
    assert np.all(np.abs(p.mean(0) - 4.0) < 4 * se)
    kt, pt, _ = power_spectrum(torch.tensor(x), bins=6)
    assert isinstance(pt, torch.Tensor)
    np.testing.assert_allclose(pt.numpy(), p)
    # With a sky geometry the same call returns C_ell = sigma^2 * pixel area in sr.
    g = FlatGeometry(64, 2.0)
    _, cl, _ = power_spectrum(x, g, bins=6)
    np.testing.assert_allclose(cl, p * g.pixel_area)


def test_pixel_pdf_matches_numpy_histogram():
    x = np.random.default_rng(1).lognormal(size=(3, 2, 16, 16))
    centres, pdf = pixel_pdf(x, 12)
    edges = np.linspace(x.min(), x.max(), 13)
    np.testing.assert_allclose(centres, 0.5 * (edges[1:] + edges[:-1]))
    for idx in np.ndindex(3, 2):
        ref, _ = np.histogram(x[idx], bins=edges, density=True)
        np.testing.assert_allclose(pdf[idx], ref, rtol=1e-12)
    explicit = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    _, counts = pixel_pdf(torch.tensor(x[0, 0]), explicit, density=False)
    np.testing.assert_array_equal(counts.numpy(), np.histogram(x[0, 0], bins=explicit)[0])
    _, ranged = pixel_pdf(x[0, 0], 5, range=(0.5, 1.5))
    np.testing.assert_allclose(ranged, np.histogram(x[0, 0], 5, range=(0.5, 1.5), density=True)[0])


# -- Minkowski functionals -----------------------------------------------------------------------
def test_minkowski_functionals_of_discs_annuli_and_holes():
    n = 128
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - 63.3, xx - 64.1)
    A = float(n * n)
    for R in (6.0, 15.0, 30.0):
        v0, v1, v2 = (f[0] for f in minkowski_functionals(R - r, [0.0]))
        # Area by pixel counting: Gauss-circle error <~ 2 pi R / sqrt(#) ; perimeter of the
        # inscribed marching-squares polygon: relative error O((1 / R)^2) (< 1 % at R = 6).
        assert abs(v0 * A - np.pi * R * R) < 2 * np.pi * R * 0.25 + 2
        assert v1 * 4 * A == pytest.approx(2 * np.pi * R, rel=0.01)
        assert v2 * A == pytest.approx(1.0, abs=1e-9)
    # Annulus 24 < r < 36: area 4 pi R w, boundary 2 pi (R_out + R_in), Euler characteristic 0.
    v0, v1, v2 = (f[0] for f in minkowski_functionals(6.0 - np.abs(r - 30.0), [0.0]))
    assert v0 * A == pytest.approx(4 * np.pi * 30 * 6, rel=0.01)
    assert v1 * 4 * A == pytest.approx(4 * np.pi * 30, rel=0.01)
    assert v2 * A == pytest.approx(0.0, abs=1e-9)
    # Three separate discs: chi = 3. A hole in the torus: chi = 0 - 1; in a square: 1 - 1.
    three = np.maximum.reduce([5 - np.hypot(yy - cy, xx - cx) for cy, cx in [(20, 20), (20, 90), (90, 60)]])
    assert minkowski_functionals(three, [0.0]).v2[0] * A == pytest.approx(3.0)
    assert minkowski_functionals(r - 10, [0.0]).v2[0] * A == pytest.approx(-1.0)
    assert minkowski_functionals(r - 10, [0.0], periodic=False).v2[0] == pytest.approx(0.0)
    # Physical units: on 2' pixels V1 is per radian and V2 per steradian.
    g = FlatGeometry(n, 2.0)
    mf = minkowski_functionals(torch.tensor(15.0 - r), torch.tensor([0.0]), g)
    assert isinstance(mf.v1, torch.Tensor)
    assert float(mf.v1[0]) * 4 * g.area == pytest.approx(2 * np.pi * 15 * g.dx, rel=0.01)
    assert float(mf.v2[0]) * g.area == pytest.approx(1.0)


def test_euler_characteristic_matches_scipy_labelling():
    # Without ambiguous (saddle) cells, chi = components - holes of the excursion set, which
    # scipy.ndimage.label counts independently (4-connected set, 8-connected complement).
    u, _, _ = _grf(96, 4.0, 1, seed=5)
    u = u[0] / u.std()
    checked = 0
    for nu in np.linspace(-1.5, 1.5, 13):
        s = u > nu
        a, b, c, d = s[:-1, :-1], s[:-1, 1:], s[1:, 1:], s[1:, :-1]
        if np.any((a == c) & (b == d) & (a != b)):
            continue
        n_fg = ndimage.label(s)[1]
        bg, n_bg = ndimage.label(~s, structure=np.ones((3, 3)))
        border = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
        holes = n_bg - np.count_nonzero(border)
        chi = minkowski_functionals(u, [nu], periodic=False).v2[0] * 95 * 95
        assert chi == pytest.approx(n_fg - holes), nu
        checked += 1
    assert checked >= 5


def test_saddle_cells_follow_the_centre_value():
    # Two pixels above nu touching diagonally: joined through the cell (one component, chi = 1)
    # when the bilinear centre value 0.5 exceeds nu, separate (chi = 2) otherwise.
    u = np.zeros((8, 8))
    u[3, 3] = u[4, 4] = 1.0
    for periodic in (True, False):
        area = 64 if periodic else 49
        chi = minkowski_functionals(u, [0.4, 0.6], periodic=periodic).v2 * area
        np.testing.assert_allclose(chi, [1.0, 2.0])
    # The complement on the torus: at nu = -0.6 the centre (-0.5) is above, so the two holes are
    # cut apart (chi = 0 - 2); at nu = -0.4 it is below and they merge into one (chi = -1).
    chi = minkowski_functionals(-u, [-0.6, -0.4]).v2 * 64
    np.testing.assert_allclose(chi, [-2.0, -1.0])


def test_minkowski_functionals_of_gaussian_fields_match_tomita():
    """Large smooth GRFs against V0 = erfc(nu/sqrt2)/2, V1 = sigma1/sigma0 e^{-nu^2/2} / (8 sqrt2),
    V2 = sigma1^2/(2 sigma0^2) nu e^{-nu^2/2} / (2 pi)^{3/2}.

    Four 384^2 maps, smoothing scale 4 px. Each map is standardised by its own sigma0 and uses its
    own sigma1 (from its Fourier modes), removing the dominant cosmic-variance mode. Tolerance: an
    ensemble of 8 such maps gave standard errors of the 4-map mean of <= 0.5 % (V0), 1.2 % (V1) and
    3.5 % (V2) at |nu| <= 1 and <= 3.5 % (V0, V1) at |nu| = 2; we allow 4 standard errors plus
    1 % for the polygon (marching-squares) discretisation.
    """
    n, s = 384, 4.0
    u, fk, k2 = _grf(n, s, 4, seed=4)
    s0 = u.std(axis=(-2, -1))
    s1 = np.sqrt((k2 * np.abs(fk) ** 2).sum((-2, -1)) / n**4) / s0
    u = u / s0[:, None, None]
    nus = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    v0, v1, v2 = minkowski_functionals(torch.tensor(u), torch.tensor(nus))
    v0, v1, v2 = v0.numpy(), v1.numpy(), v2.numpy()
    g = np.exp(-0.5 * nus**2)
    t0 = 0.5 * erfc(nus / math.sqrt(2))
    t1 = s1[:, None] * g / (8 * math.sqrt(2))
    t2 = s1[:, None] ** 2 / 2 * nus * g / (2 * math.pi) ** 1.5
    se0 = np.array([0.035, 0.005, 0.005, 0.005, 0.035])
    se1 = np.array([0.035, 0.012, 0.012, 0.012, 0.035])
    se2 = np.array([0.05, 0.035, np.nan, 0.035, 0.05])
    r0 = (v0 / t0).mean(0)
    r1 = (v1 / t1).mean(0)
    r2 = (v2[:, [0, 1, 3, 4]] / t2[:, [0, 1, 3, 4]]).mean(0)
    assert np.all(np.abs(r0 - 1) < 4 * se0 + 0.01), r0
    assert np.all(np.abs(r1 - 1) < 4 * se1 + 0.01), r1
    assert np.all(np.abs(r2 - 1) < 4 * se2[[0, 1, 3, 4]] + 0.01), r2
    # V2 vanishes at nu = 0; compare with the scale of V2 at nu = 1.
    assert abs(v2[:, 2].mean()) < 4 * 0.035 * t2[:, 3].mean()


# -- peaks -------------------------------------------------------------------------------------------
def _blobs(n_side, cell, sigma, offsets, heights):
    """Gaussian blobs on a grid of cells: blob b at the centre of cell b plus offsets[b]."""
    size = n_side * cell
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size))
    centres = []
    for b, ((dy, dx), h) in enumerate(zip(offsets, heights)):
        cy = (b // n_side) * cell + cell // 2 + dy
        cx = (b % n_side) * cell + cell // 2 + dx
        centres.append((cy, cx))
        img += h * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return img, np.array(centres)


def test_peak_counts_and_positions_on_known_blobs():
    rng = np.random.default_rng(2)
    heights = rng.uniform(0.5, 3.0, 36)
    img, centres = _blobs(6, 20, 1.5, np.zeros((36, 2)), heights)
    thresholds = np.array([0.0, 1.0, 1.5, 2.0, 2.9])
    counts = peak_counts(img, thresholds)
    np.testing.assert_array_equal(counts, [(heights > t).sum() for t in thresholds])
    diff = peak_counts(torch.tensor(img), torch.tensor(thresholds), differential=True).numpy()
    np.testing.assert_array_equal(diff, np.histogram(heights, thresholds)[0])
    rows, cols, h = find_peaks(img)
    order = np.argsort(-heights)
    np.testing.assert_array_equal(np.c_[rows, cols], centres[order])
    np.testing.assert_allclose(h, heights[order])


def test_peak_mask_matches_scipy_maximum_filter():
    u, _, _ = _grf(64, 2.0, 3, seed=8)
    ref = np.stack([m == ndimage.maximum_filter(m, size=3, mode="wrap") for m in u])
    np.testing.assert_array_equal(peak_mask(u), ref)
    inner = peak_mask(torch.tensor(u), periodic=False).numpy()
    ref_np = np.stack([m == ndimage.maximum_filter(m, size=3, mode="constant", cval=-np.inf) for m in u])
    ref_np[:, [0, -1], :] = False
    ref_np[:, :, [0, -1]] = False
    np.testing.assert_array_equal(inner, ref_np)


def test_stacked_peaks_recover_the_blob_profile():
    sigma, cell = 2.0, 24
    rng = np.random.default_rng(3)
    offsets = rng.uniform(-0.5, 0.5, (4, 64, 2))
    imgs = np.stack([_blobs(8, cell, sigma, offsets[i], np.ones(64))[0] for i in range(4)])
    stack, n_peaks = stacked_peaks(imgs, size=21)
    assert n_peaks == 256
    # The peak pixel of each blob is the pixel nearest its centre, so the exact stack is the mean
    # over blobs of the Gaussian at (pixel - offset); neighbours add < exp(-13^2 / 8) ~ 1e-9.
    d = np.arange(-10, 11)
    off = offsets.reshape(-1, 2)
    exact = np.mean([np.exp(-((d[:, None] - oy) ** 2 + (d[None, :] - ox) ** 2) / (2 * sigma**2))
                     for oy, ox in off], axis=0)
    np.testing.assert_allclose(stack, exact, atol=1e-8)
    # In expectation (uniform offsets) it is the Gaussian averaged over one pixel, per axis
    # sigma sqrt(pi/2) [erf((d + 1/2) / (sigma sqrt2)) - erf((d - 1/2) / (sigma sqrt2))].
    per_axis = sigma * np.sqrt(np.pi / 2) * (erf((d + 0.5) / (sigma * np.sqrt(2)))
                                             - erf((d - 0.5) / (sigma * np.sqrt(2))))
    expected = np.outer(per_axis, per_axis)
    spread = np.std([np.exp(-((d[:, None] - oy) ** 2 + (d[None, :] - ox) ** 2) / (2 * sigma**2))
                     for oy, ox in off], axis=0)
    assert np.all(np.abs(stack - expected) < 4 * spread / np.sqrt(256) + 1e-9)
    # Radial profile against a numpy annulus average of the expected stack.
    r, prof = radial_profile(stack)
    rr = np.hypot(*np.meshgrid(d, d, indexing="ij"))
    ring = np.floor(rr + 0.5).astype(int)
    ref = np.array([expected[ring == i].mean() for i in range(len(prof))])
    ref_r = np.array([rr[ring == i].mean() for i in range(len(prof))])
    np.testing.assert_allclose(r, ref_r)
    tol = np.array([(4 * spread / np.sqrt(256))[ring == i].max() for i in range(len(prof))]) + 1e-9
    assert np.all(np.abs(prof - ref) < tol)


def test_stacked_peaks_threshold_border_and_radial_profile_batch():
    img, _ = _blobs(3, 20, 1.5, np.zeros((9, 2)), np.linspace(1, 2, 9))
    rolled = np.roll(img, (-10, -10), axis=(0, 1))  # first blob now wraps around the corner
    _, n_all = stacked_peaks(rolled, size=11)
    _, n_inner = stacked_peaks(rolled, size=11, periodic=False)
    _, n_high = stacked_peaks(rolled, size=11, threshold=1.5)
    assert (n_all, n_inner, n_high) == (9, 4, 4)
    images = torch.tensor(np.random.default_rng(0).normal(size=(2, 3, 9, 9)))
    r, prof = radial_profile(images, bin_width=2.0)
    assert prof.shape == (2, 3, len(r))
    yy, xx = np.mgrid[:9, :9]
    ring = np.floor(np.hypot(yy - 4, xx - 4) / 2 + 0.5).astype(int)
    np.testing.assert_allclose(prof[1, 2, 1].item(), images[1, 2].numpy()[ring == 1].mean())
