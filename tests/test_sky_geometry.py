"""FlatGeometry against independent references: numpy loops, Parseval, closed forms."""

import math

import numpy as np
import pytest
import torch
from _errors import refused

from bayessky.sky import ARCMIN, FlatGeometry, rfft_weights


def _numpy_spectrum_loop(maps, maps2, dx, edges, sky_area_units=True):
    """Brute force: loop over every DFT mode, place it in its bin by comparing with the edges."""
    ny, nx = maps.shape[-2:]
    ky = 2 * np.pi * np.fft.fftfreq(ny, d=dx)
    kx = 2 * np.pi * np.fft.fftfreq(nx, d=dx)
    f1 = np.fft.fft2(maps)
    f2 = np.fft.fft2(maps2)
    nb = len(edges) - 1
    psum = np.zeros(maps.shape[:-2] + (nb,))
    ksum = np.zeros(nb)
    cnt = np.zeros(nb)
    for iy in range(ny):
        for ix in range(nx):
            k = math.hypot(ky[iy], kx[ix])
            for b in range(nb):
                if edges[b] <= k < edges[b + 1]:
                    psum[..., b] += (f1[..., iy, ix] * np.conj(f2[..., iy, ix])).real / (nx * ny) * dx * dx
                    ksum[b] += k
                    cnt[b] += 1
                    break
    return ksum / cnt, psum / cnt, cnt


@pytest.mark.parametrize("shape", [(24, 40), (31, 16)])
def test_power_spectrum_matches_numpy_mode_loop(shape):
    rng = np.random.default_rng(1)
    g = FlatGeometry(shape, 3.0)  # 3 arcmin pixels, rectangular (and odd) grids
    maps = rng.normal(size=(2,) + shape)
    maps2 = maps + 0.5 * rng.normal(size=(2,) + shape)
    kmax = np.pi / g.dx * math.sqrt(2)
    edges = np.linspace(0.3 * g.k_fundamental, kmax, 9)
    k_ref, p_ref, c_ref = _numpy_spectrum_loop(maps, maps, g.dx, edges)
    k, p, c = g.power_spectrum(torch.tensor(maps), edges)
    np.testing.assert_array_equal(c.numpy(), c_ref)
    np.testing.assert_allclose(k.numpy(), k_ref, rtol=1e-12)
    np.testing.assert_allclose(p.numpy(), p_ref, rtol=1e-10)
    # Cross spectrum and per-mode normalisation (S = C / pixel_area).
    _, x_ref, _ = _numpy_spectrum_loop(maps, maps2, g.dx, edges)
    _, x, _ = g.power_spectrum(torch.tensor(maps), edges, maps2=torch.tensor(maps2), per_mode=True)
    np.testing.assert_allclose(x.numpy() * g.pixel_area, x_ref, rtol=1e-10)


def test_integer_bins_cover_every_mode_but_the_mean():
    g = FlatGeometry((20, 26), 1.5)
    _, _, counts = g.power_spectrum(torch.zeros(20, 26, dtype=torch.float64), bins=7)
    assert int(counts.sum()) == g.npix - 1  # only k = 0 is left out


def test_integer_bins_cover_every_mode_float32():
    g = FlatGeometry((20, 26), 1.5)
    _, _, counts = g.power_spectrum(torch.zeros(20, 26, dtype=torch.float32), bins=7)
    assert int(counts.sum()) == g.npix - 1


def test_grf_pixel_variance_is_flat_sky_parseval_integral():
    # C_ell = A exp(-ell^2 / ell_s^2): var = int C_ell ell dell / 2 pi = A ell_s^2 / (4 pi).
    g = FlatGeometry(128, 2.0)
    A, ell_s = 3.0e-5, 1000.0
    S = g.per_mode_spectrum(lambda ell: A * torch.exp(-((ell / ell_s) ** 2))).numpy()
    expected = A * ell_s**2 / (4 * math.pi)
    # The grid is a Riemann sum of the integral with cell (2 pi)^2 / area; ell_s = 12 k_f and
    # ell_s << ell_max make it exact to far below 1e-6.
    assert S.mean() == pytest.approx(expected, rel=1e-6)
    # Sampling by numpy with the documented convention E|fft2(x)|^2 = N_pix S.
    rng = np.random.default_rng(7)
    w = rng.standard_normal((16,) + g.shape)
    x = np.fft.ifft2(np.fft.fft2(w) * np.sqrt(S)).real
    var = (x**2).mean()
    # Var of the pixel-variance estimate: each map's mean x^2 = sum_k |X_k|^2 / N^2 with
    # |X_k|^2 ~ N S_k Exp(1) paired at +-k, so var = 2 sum_k S_k^2 / N^2 per map.
    se = math.sqrt(2 * (S**2).sum() / g.npix**2 / 16)
    assert abs(var - expected) < 4 * se, (var, expected, se)


@pytest.mark.parametrize("shape", [(24, 40), (33, 17)])
def test_rectangular_k_grids_match_numpy_fftfreq(shape):
    g = FlatGeometry(shape, 0.5, unit="deg")
    dx = 0.5 * math.pi / 180
    ky, kx = g.k_vectors()
    np.testing.assert_allclose(ky[:, 0].numpy(), 2 * np.pi * np.fft.fftfreq(shape[0], dx))
    np.testing.assert_allclose(kx[0].numpy(), 2 * np.pi * np.fft.fftfreq(shape[1], dx))
    _, kxr = g.k_vectors(rfft=True)
    np.testing.assert_allclose(kxr[0].numpy(), 2 * np.pi * np.fft.rfftfreq(shape[1], dx))
    assert g.ell().shape == shape
    assert g.side_lengths == pytest.approx((shape[0] * dx, shape[1] * dx))
    assert g.k_fundamental == pytest.approx(2 * np.pi / (max(shape) * dx))
    assert g.ell_max == pytest.approx(np.pi / dx)
    assert g == FlatGeometry(shape, 30.0, unit="arcmin")


@pytest.mark.parametrize("nx", [16, 17])
def test_rfft_weights_sum_identity(nx):
    g = FlatGeometry((12, nx), 1.0)
    x = torch.tensor(np.random.default_rng(2).normal(size=(3, 12, nx)))
    w = g.rfft_weights()
    full = (torch.fft.fft2(x).abs() ** 2).sum((-2, -1))
    half = (w * torch.fft.rfft2(x).abs() ** 2).sum((-2, -1))
    np.testing.assert_allclose(half.numpy(), full.numpy(), rtol=1e-12)
    assert float(w.sum()) == g.npix


@pytest.mark.parametrize("shape", [(2, 2), (2, 3), (3, 2), (6, 8), (7, 9), (8, 7), (12, 17)])
def test_rfft_weights_count_full_dft_modes(shape):
    """Brute force: map each of the ny * nx full-DFT modes to the rfft half-plane mode it equals
    (itself, or its conjugate partner (-i mod ny, -j mod nx)) and count."""
    ny, nx = shape
    nxr = nx // 2 + 1
    counts = np.zeros((ny, nxr))
    for i in range(ny):
        for j in range(nx):
            if j < nxr:
                counts[i, j] += 1
            else:
                counts[(-i) % ny, (-j) % nx] += 1
    w = rfft_weights(ny, nx)
    assert w.shape == (ny, nxr) and w.dtype == torch.float64
    np.testing.assert_array_equal(w.numpy(), counts)
    np.testing.assert_array_equal(FlatGeometry(shape, 1.0).rfft_weights(dtype=torch.float32).numpy(), counts)
    # and the identity the weights are for: the weighted rfft sum is the full fft2 sum
    x = torch.tensor(np.random.default_rng(7).normal(size=(2, ny, nx)))
    full = (torch.fft.fft2(x).abs() ** 2).sum((-2, -1))
    half = (w * torch.fft.rfft2(x).abs() ** 2).sum((-2, -1))
    np.testing.assert_allclose(half.numpy(), full.numpy(), rtol=1e-12)


def test_box_units_mpc_over_h():
    L, n = 25.0, 64
    g = FlatGeometry(n, L / n, unit="Mpc/h")
    assert not g.is_sky
    assert g.k_fundamental == pytest.approx(2 * np.pi / L)
    assert g.pixel_area == pytest.approx((L / n) ** 2)
    np.testing.assert_allclose(g.k_grid()[0].numpy(), np.abs(2 * np.pi * np.fft.fftfreq(n, L / n)))
    # White noise of variance sigma^2 has P(k) = sigma^2 * A_pix in (Mpc/h)^2.
    sigma = 1.7
    maps = np.random.default_rng(3).normal(0, sigma, (40, n, n))
    _, p, counts = g.power_spectrum(torch.tensor(maps), bins=6)
    p = p.mean(0).numpy()
    # Each bin averages counts * 40 exponential |X_k|^2 (half of them independent).
    se = sigma**2 * g.pixel_area * np.sqrt(2 / (counts.numpy() * 40))
    assert np.all(np.abs(p - sigma**2 * g.pixel_area) < 4 * se)


def test_sky_units_and_convention_constants():
    assert ARCMIN == pytest.approx(np.radians(1 / 60))
    g = FlatGeometry(10, 1.0, unit="deg")
    assert g.pixel_area == pytest.approx(np.radians(1.0) ** 2)
    with pytest.raises(ValueError, match="unit"):
        FlatGeometry(10, 1.0, unit="parsec")
    with pytest.raises(ValueError, match="pixel_size"):
        FlatGeometry(10, -1.0)


# -- boundary checks: one-line errors that name the argument ----------------------------------
@pytest.mark.parametrize("n, exc", [
    ("88", TypeError),        # iterating the string gave (8, 8)
    ("16", TypeError),        # ... and (1, 6)
    (None, TypeError),
    (True, TypeError),
    (8.7, ValueError),        # int() truncated it
    ((8.9, 8.2), ValueError),
    ((8, 8, 8), ValueError),
    (1, ValueError),
])
def test_grid_size_must_be_whole_numbers(n, exc):
    refused(exc, "n", lambda: FlatGeometry(n, 1.0))


def test_integral_sizes_and_arrays_still_accepted():
    assert FlatGeometry(16.0, 1.0).shape == (16, 16)
    assert FlatGeometry(np.array([8, 12]), 1.0).shape == (8, 12)
    assert FlatGeometry(np.int64(8), 1.0).shape == (8, 8)
    refused(TypeError, "pixel_size", lambda: FlatGeometry(8, None))
    refused(TypeError, "pixel_size", lambda: FlatGeometry(8, "2"))


def test_power_spectrum_bins_and_maps2_checked():
    g = FlatGeometry(8, 2.0)
    for bins in (0, -3):
        refused(ValueError, "bins", lambda b=bins: g.power_spectrum(torch.zeros(8, 8), bins=b))
    msg = refused(ValueError, "maps2",
                   lambda: g.power_spectrum(torch.zeros(3, 8, 8), maps2=torch.zeros(2, 8, 8)))
    assert "(2,)" in msg and "(3,)" in msg
    # broadcasting against a single map stays allowed
    assert g.power_spectrum(torch.ones(3, 8, 8), maps2=torch.ones(8, 8))[1].shape == (3, 20)


def test_per_mode_spectrum_refuses_bad_callables_and_inputs():
    g = FlatGeometry(8, 2.0)
    refused(ValueError, "spectrum", lambda: g.per_mode_spectrum(lambda k: k * float("nan")))
    msg = refused(ValueError, "spectrum", lambda: g.per_mode_spectrum(lambda k: torch.ones(3)))
    assert "(3,)" in msg
    refused(ValueError, "spectrum", lambda: g.per_mode_spectrum((np.arange(5.0), np.full(5, np.nan))))
    refused(TypeError, "spectrum", lambda: g.per_mode_spectrum(3.0))
    refused(TypeError, "dtype", lambda: g.per_mode_spectrum(lambda k: k, dtype=torch.int64))
    # a constant callable is spread over the grid instead of coming back 0-d
    s = g.per_mode_spectrum(lambda k: 2.0)
    assert s.shape == (8, 8) and torch.allclose(s, torch.full((8, 8), 2.0 / g.pixel_area, dtype=s.dtype))
