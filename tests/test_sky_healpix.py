"""HEALPix bridge against healpy itself: interpolation, projections, spectra, round trips."""

import math

import healpy as hp
import numpy as np
import pytest
import torch
from _errors import refused
from scipy.signal.windows import tukey

from bayessky.sky import FlatGeometry
from bayessky.sky.healpix import PatchProjection, anafast, cut_patch, paste_patch, synfast


@pytest.fixture(scope="module")
def smooth_map():
    ell = np.arange(40)
    return synfast(np.exp(-((ell / 8.0) ** 2)), 64, seed=1)  # scales >~ 7 deg


@pytest.mark.parametrize("nest", [False, True])
@pytest.mark.parametrize("projection", ["gnomonic", "car"])
def test_patch_values_are_healpy_interpolation_at_the_pixel_centres(nest, projection):
    m = np.random.default_rng(0).normal(size=hp.nside2npix(32))
    m_in = hp.reorder(m, r2n=True) if nest else m
    patch, proj = cut_patch(m_in, (200.0, -35.0), (12, 15), 40.0, projection=projection, nest=nest)
    lon, lat = proj.lonlat()
    ref = hp.get_interp_val(m_in, lon, lat, nest=nest, lonlat=True)
    np.testing.assert_allclose(patch, ref, rtol=1e-13, atol=1e-13)
    # RING and NESTED orderings of the same sky give the same patch.
    ring_patch, _ = cut_patch(m, (200.0, -35.0), (12, 15), 40.0, projection=projection)
    np.testing.assert_allclose(patch, ring_patch, rtol=1e-13, atol=1e-13)
    near, _ = cut_patch(m_in, (200.0, -35.0), (12, 15), 40.0, projection=projection, nest=nest,
                        interpolation="nearest")
    np.testing.assert_array_equal(near, m_in[hp.ang2pix(32, lon, lat, nest=nest, lonlat=True)])


def test_non_power_of_two_nside_ring_and_torch_stack():
    nside = 48  # valid in RING only
    m = torch.tensor(np.random.default_rng(1).normal(size=(2, hp.nside2npix(nside))))
    patch, proj = cut_patch(m, (10.0, 80.0), 9, 30.0)
    assert isinstance(patch, torch.Tensor) and patch.shape == (2, 9, 9)
    lon, lat = proj.lonlat()
    for i in range(2):
        ref = hp.get_interp_val(m[i].numpy(), lon, lat, lonlat=True)
        np.testing.assert_allclose(patch[i].numpy(), ref, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="nest"):
        cut_patch(m, (10.0, 80.0), 9, 30.0, nest=True)


@pytest.mark.parametrize("centre", [(30.0, 20.0), (300.0, -70.0), (0.0, 90.0)])
def test_gnomonic_coordinates_match_healpy_projector(centre):
    proj = PatchProjection(centre, (10, 14), 30.0)
    lon, lat = proj.lonlat()
    y, x = proj.plane()
    # healpy's GnomonicProj has x increasing westwards (sky seen from inside): flip the sign.
    P = hp.projector.GnomonicProj(rot=(centre[0], centre[1], 0.0))
    hlon, hlat = P.xy2ang(-x.ravel(), y.ravel(), lonlat=True)
    dlon = (lon.ravel() - hlon + 180) % 360 - 180
    assert np.abs(dlon * np.cos(np.radians(lat.ravel()))).max() < 1e-9
    np.testing.assert_allclose(lat.ravel(), hlat, atol=1e-9)
    # project() inverts lonlat() to fractional pixel indices.
    row, col = proj.project(lon, lat)
    rr, cc = np.mgrid[:10, :14]
    np.testing.assert_allclose(row, rr, atol=1e-8)
    np.testing.assert_allclose(col, cc, atol=1e-8)


def test_car_coordinates_are_a_regular_lon_lat_grid():
    proj = PatchProjection((359.0, 10.0), (5, 6), 60.0, "car")
    lon, lat = proj.lonlat()
    np.testing.assert_allclose(lat[:, 0], 10.0 + np.arange(-2, 3))
    np.testing.assert_allclose((lon[0] + 180) % 360 - 180, -1.0 + np.arange(-2.5, 3.5))
    with pytest.raises(ValueError, match="pole"):
        PatchProjection((0.0, 88.0), (10, 10), 60.0, "car")


def test_gnomonic_patch_spectrum_of_synfast_map_matches_input_cl():
    """synfast C_ell -> gnomonic patches -> FlatGeometry.power_spectrum recovers C_ell.

    Nside 512; 36 patches of 128^2 x 4' (8.5 deg) on the equatorial belt (lat 0, +-20 deg), each
    tapered by a Tukey(0.4) window (normalised by <w^2>) to kill edge leakage. Interpolation:
    healpy's bilinear scheme is linear along rings (spacing h_x = cos(lat) pi / (2 Nside)) and
    linear between rings (h_y = 2 / (3 Nside cos(lat)) in the belt), so the patch power is
    C(ell) sinc^4(k_x h_x / 2) sinc^4(k_y h_y / 2) on each mode (aliases fall beyond lmax here).
    Tolerance: each bin averages N modes, half independent, and the taper cuts the effective
    number by <w^2>^2/<w^4>; a bin's relative standard error is 1/sqrt(N_eff / 2) (2-5 %), and
    each bin must lie within 4 of them, the weighted mean of all bins within 4 of its own.
    """
    nside, n, pix = 512, 128, 4.0
    ell = np.arange(3 * nside)
    cl = 1e-4 * (1 + ell / 300.0) ** -2.0
    m = synfast(cl, nside, seed=3)
    g = FlatGeometry(n, pix)
    w1 = tukey(n, 0.4)
    w = np.outer(w1, w1)
    norm = (w**2).mean()
    edges = np.arange(100, 1001, 75)
    ky, kx = (v.numpy() for v in g.k_vectors())
    kk = np.hypot(kx, ky).ravel()
    measured, expected = [], []
    for lat in (-20.0, 0.0, 20.0):
        patches = np.stack([cut_patch(m, (lon, lat), n, pix)[0] for lon in range(0, 360, 30)])
        _, p, counts = g.power_spectrum(torch.tensor(patches * w), edges)
        measured.append(p.numpy().mean(0) / norm)
        c = math.cos(math.radians(lat))
        hx, hy = np.pi / (2 * nside) * c, 2 / (3 * nside) / c
        transfer = (np.sinc(kx * hx / (2 * np.pi)) ** 4 * np.sinc(ky * hy / (2 * np.pi)) ** 4).ravel()
        ct = np.interp(kk, ell, cl) * transfer
        expected.append([ct[(kk >= a) & (kk < b)].mean() for a, b in zip(edges[:-1], edges[1:])])
    ratio = np.mean(measured, 0) / np.mean(expected, 0)
    n_eff = counts.numpy() * 36 / 2 * norm**2 / (w**4).mean()
    se = 1 / np.sqrt(n_eff)  # each independent mode's |X|^2 is exponential: relative std 1
    assert np.all(np.abs(ratio - 1) < 4 * se), (ratio, se)
    wgt = 1 / se**2
    mean = (ratio * wgt).sum() / wgt.sum()
    assert abs(mean - 1) < 4 / math.sqrt(wgt.sum()), mean


@pytest.mark.parametrize("nest", [False, True])
def test_paste_of_cut_reproduces_a_smooth_map(smooth_map, nest):
    nside = 64
    m = hp.reorder(smooth_map, r2n=True) if nest else smooth_map
    rms = smooth_map.std()
    # Patch pixels (40') finer than HEALPix's (55'): interpolation fills every covered pixel.
    patch, proj = cut_patch(m, (40.0, 10.0), 48, 40.0, nest=nest)
    out, pix = paste_patch(nside, patch, proj, nest=nest)
    # Every HEALPix pixel whose centre projects inside the patch is written, and only those.
    lon, lat = hp.pix2ang(nside, np.arange(hp.nside2npix(nside)), nest=nest, lonlat=True)
    row, col = proj.project(lon, lat)
    inside = np.flatnonzero(np.isfinite(row) & (row >= 0) & (row <= 47) & (col >= 0) & (col <= 47))
    np.testing.assert_array_equal(np.sort(pix), inside)
    assert np.all(out[np.setdiff1d(np.arange(out.size), pix)] == hp.UNSEEN)
    # Two bilinear interpolations of a field smooth on ~7 deg scales: error ~ (k h)^2 / 8, below 2 %.
    assert np.abs(out[pix] - m[pix]).max() < 0.02 * rms
    # Averaging: patch pixels (8') much finer than HEALPix's; pixels well inside the patch are fully
    # covered, so each gets its own pixel average of a smooth field (error ~ (k h)^2 / 24).
    fine, fproj = cut_patch(m, (40.0, 10.0), 128, 8.0, nest=nest)
    base = m.copy()
    base[:] = 0.0
    out, pix = paste_patch(base, fine, fproj, nest=nest, method="average")
    lon, lat = hp.pix2ang(nside, pix, nest=nest, lonlat=True)
    row, col = fproj.project(lon, lat)
    margin = 1.5 * hp.nside2resol(nside, arcmin=True) / 8.0
    deep = (row > margin) & (row < 127 - margin) & (col > margin) & (col < 127 - margin)
    assert deep.sum() > 50
    assert np.abs(out[pix[deep]] - m[pix[deep]]).max() < 0.02 * rms
    assert np.count_nonzero(out) == len(pix)


def test_synfast_spectrum_and_anafast_ordering():
    nside, lmax = 64, 127
    ell = np.arange(lmax + 1)
    cl = 1.0 / (ell + 5.0) ** 2
    m = synfast(cl, nside, seed=11)
    np.testing.assert_array_equal(m, synfast(cl, nside, seed=11))
    est = hp.anafast(m, lmax=lmax)
    # Cosmic variance: Var(C_ell estimate) = 2 C_ell^2 / (2 ell + 1), independent across ell, so a
    # bin of 16 multipoles has relative std sqrt(sum 2 C^2 / (2 ell + 1)) / sum C (5-7 %).
    for lo in range(16, lmax + 1 - 16, 16):
        sl = slice(lo, lo + 16)
        se = math.sqrt((2 * cl[sl] ** 2 / (2 * ell[sl] + 1)).sum()) / cl[sl].sum()
        ratio = est[sl].sum() / cl[sl].sum()
        assert abs(ratio - 1) < 4 * se, (lo, ratio, se)
    m_nest = synfast(cl, nside, seed=11, nest=True)
    np.testing.assert_array_equal(m_nest, hp.reorder(m, r2n=True))
    np.testing.assert_allclose(anafast(m_nest, lmax=lmax, nest=True), est, rtol=1e-10)
    stack = anafast(torch.tensor(np.stack([m, 2 * m])), lmax=lmax)
    np.testing.assert_allclose(stack[1].numpy(), 4 * est, rtol=1e-10)


def test_unseen_pixels_are_refused():
    m = np.zeros(hp.nside2npix(16))
    m[hp.ang2pix(16, 0.0, 0.0, lonlat=True)] = hp.UNSEEN
    with pytest.raises(ValueError, match="UNSEEN"):
        cut_patch(m, (0.0, 0.0), 4, 60.0)
    with pytest.raises(ValueError, match="hp_map"):
        cut_patch(np.zeros(100), (0.0, 0.0), 4, 60.0)


# -- boundary checks: one-line errors that name the argument ----------------------------------
_M16 = np.arange(12 * 16**2, dtype=float)


@pytest.mark.parametrize("centre, exc", [
    ((float("nan"), 0.0), ValueError),  # used to cut an all-NaN patch
    ((float("inf"), 0.0), ValueError),
    ((0.0, float("nan")), ValueError),
    (0.0, TypeError),
    ((0.0, 0.0, 0.0), TypeError),
    ("ab", TypeError),
])
def test_cut_patch_centre_checked(centre, exc):
    refused(exc, "centre", lambda: cut_patch(_M16, centre, 8, 30.0))


@pytest.mark.parametrize("npix, exc", [(8.7, ValueError), ("8", TypeError), (None, TypeError),
                                       (True, TypeError), ((8, 1), ValueError)])
def test_cut_patch_npix_checked(npix, exc):
    refused(exc, "npix", lambda: cut_patch(_M16, (0.0, 0.0), npix, 30.0))


def test_cut_patch_refuses_complex_and_bad_pixel_size():
    z = torch.complex(torch.ones(3072), 5 * torch.ones(3072))
    refused(TypeError, "hp_map", lambda: cut_patch(z, (0.0, 0.0), 8, 30.0))
    refused(TypeError, "hp_map", lambda: cut_patch(z.numpy(), (0.0, 0.0), 8, 30.0))
    refused(TypeError, "pixel_size_arcmin", lambda: cut_patch(_M16, (0.0, 0.0), 8, "30"))
    # integral floats stay fine, CAR near a pole is still refused by name
    assert cut_patch(_M16, (0.0, 0.0), 8.0, 30.0)[0].shape == (8, 8)
    refused(ValueError, "npix", lambda: cut_patch(_M16, (0.0, 89.0), 8, 60.0, projection="car"))


def test_paste_patch_target_and_patch_checked():
    patch, proj = cut_patch(_M16, (10.0, 20.0), 8, 30.0)
    refused(TypeError, "target", lambda: paste_patch(True, patch, proj))  # built an Nside-1 map
    refused(TypeError, "target", lambda: paste_patch("16", patch, proj))
    msg = refused(ValueError, "patch", lambda: paste_patch(16, np.full((8, 8), np.nan), proj))
    assert "64 NaN" in msg
    refused(ValueError, "patch", lambda: paste_patch(_M16, np.full((8, 8), np.inf), proj))
    out, pix = paste_patch(16.0, patch, proj)  # an integral float Nside is an Nside
    assert out.shape == (3072,) and len(pix) > 0


def test_synfast_anafast_arguments_checked():
    cl = np.ones(10)
    refused(ValueError, "nside", lambda: synfast(cl, 16.7))
    refused(TypeError, "nside", lambda: synfast(cl, "16"))
    refused(TypeError, "nside", lambda: synfast(cl, None))
    refused(ValueError, "lmax", lambda: synfast(cl, 4, lmax=-5))
    refused(ValueError, "fwhm_arcmin", lambda: synfast(cl, 4, fwhm_arcmin=float("nan")))
    refused(ValueError, "fwhm_arcmin", lambda: synfast(cl, 4, fwhm_arcmin=-500.0))
    assert synfast(cl, 4.0, seed=0).shape == (192,)
    refused(ValueError, "hp_map", lambda: anafast(np.full(3072, np.nan)))
    refused(ValueError, "lmax", lambda: anafast(_M16, lmax=-1))
