"""Beams, pixel windows, convolution, masks, apodisation and noise against independent references."""

import math

import healpy as hp
import numpy as np
import pytest
import torch
from _errors import refused
from scipy import ndimage

from bayessky.sky import ARCMIN, FlatGeometry
from bayessky.sky.operators import (
    apodize,
    apply_beam,
    convolve,
    disc_mask,
    gaussian_beam,
    inhomogeneous_noise,
    noise_per_mode_spectrum,
    pixel_window,
    point_source_mask,
    strip_mask,
    white_noise,
    white_noise_cl,
    white_noise_level,
)


def test_beam_of_a_delta_is_the_real_space_gaussian():
    g = FlatGeometry(96, 1.0)
    fwhm = 6.0  # arcmin -> sigma = 2.55 pixels: Nyquist tail exp(-(pi sigma)^2 / 2) ~ 1e-14
    delta = torch.zeros(96, 96, dtype=torch.float64)
    delta[40, 50] = 1.0
    out = apply_beam(delta, g, fwhm).numpy()
    s = fwhm / math.sqrt(8 * math.log(2))  # pixels
    yy, xx = np.mgrid[:96, :96]
    ref = np.exp(-((yy - 40) ** 2 + (xx - 50) ** 2) / (2 * s * s)) / (2 * np.pi * s * s)
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_beam_agrees_with_healpy_gauss_beam_to_the_flat_sky_order():
    g = FlatGeometry(256, 1.0)
    fwhm = 5.0
    b = gaussian_beam(g, fwhm)
    ell = g.ell()
    ell_int = ell.round().long()
    sel = (ell == ell_int) & (ell > 0) & (ell < 4000)  # integer multipoles on the grid
    bh = torch.tensor(hp.gauss_beam(fwhm * ARCMIN, lmax=4000))[ell_int[sel]]
    # healpy uses ell(ell+1) sigma^2 instead of ell^2 sigma^2: ratio exp(-ell sigma^2 / 2).
    sigma = fwhm * ARCMIN / math.sqrt(8 * math.log(2))
    np.testing.assert_allclose((b[sel] / bh).numpy(), np.exp(ell[sel].numpy() * sigma**2 / 2), rtol=1e-12)


def test_beam_width_gradient_matches_finite_differences():
    g = FlatGeometry(16, 2.0)
    maps = torch.tensor(np.random.default_rng(0).normal(size=(2, 16, 16)))
    fwhm = torch.tensor([4.0, 7.0], dtype=torch.float64, requires_grad=True)

    probe = torch.tensor(np.random.default_rng(1).normal(size=(2, 16, 16)))

    def f(w):  # a scalar projection keeps gradcheck to one backward pass
        return (convolve(maps, gaussian_beam(g, w, rfft=True)) * probe).sum()

    assert torch.autograd.gradcheck(f, (fwhm,), eps=1e-6, atol=1e-7)


def test_pixel_window_is_the_pixel_average_of_a_plane_wave():
    g = FlatGeometry((12, 10), 3.0)
    w = pixel_window(g).numpy()
    ky, kx = (v.numpy() for v in g.k_vectors())
    # Average exp(i k.x) over a square pixel by a fine midpoint rule (200^2 sub-samples).
    u = (np.arange(200) + 0.5) / 200 - 0.5
    avg_y = np.exp(1j * np.multiply.outer(ky[:, 0], u * g.dx)).mean(-1)
    avg_x = np.exp(1j * np.multiply.outer(kx[0], u * g.dx)).mean(-1)
    ref = np.outer(avg_y, avg_x).real
    np.testing.assert_allclose(w, ref, atol=1e-5)
    np.testing.assert_allclose(pixel_window(g, rfft=True).numpy(), w[:, : 10 // 2 + 1])


@pytest.mark.parametrize("rfft", [False, True])
def test_convolve_matches_scipy_wrap_convolution(rfft):
    rng = np.random.default_rng(4)
    ny, nx = 20, 17
    maps = rng.normal(size=(3, ny, nx))
    kernel = rng.normal(size=(5, 5))
    if rfft:  # a real transfer on the half plane needs a symmetric kernel
        kernel = kernel + kernel[::-1, ::-1]
    placed = np.zeros((ny, nx))
    for i in range(5):
        for j in range(5):
            placed[(i - 2) % ny, (j - 2) % nx] = kernel[i, j]
    transfer = np.fft.rfft2(placed) if rfft else np.fft.fft2(placed)
    if rfft:
        assert np.abs(transfer.imag).max() < 1e-12
        transfer = transfer.real
    out = convolve(torch.tensor(maps), torch.tensor(transfer)).numpy()
    ref = np.stack([ndimage.convolve(m, kernel, mode="wrap") for m in maps])
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_convolve_broadcasts_per_channel_transfers_and_keeps_dtype():
    g = FlatGeometry(16, 2.0)
    maps = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    beams = gaussian_beam(g, torch.tensor([2.0, 5.0, 9.0]), rfft=True, dtype=torch.float32)
    out = convolve(maps, beams)
    assert out.dtype == torch.float32 and out.shape == (4, 3, 16, 16)
    ref = torch.stack([apply_beam(maps[:, c].double(), g, f) for c, f in enumerate([2.0, 5.0, 9.0])], 1)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5)


def test_disc_mask_matches_brute_force_periodic_distances():
    ny, nx = 18, 23
    centres = [(2.0, 3.0), (10.5, 21.2), (9.0, 8.0)]
    radii = [3.0, 4.5, 9.5]  # the last disc's box is larger than the map along y
    m = disc_mask((ny, nx), centres, radii).numpy()
    ref = np.ones((ny, nx))
    for i in range(ny):
        for j in range(nx):
            for (cy, cx), r in zip(centres, radii):
                dy = min(abs(i - cy), ny - abs(i - cy))
                dx = min(abs(j - cx), nx - abs(j - cx))
                if dy * dy + dx * dx <= r * r:
                    ref[i, j] = 0.0
    np.testing.assert_array_equal(m, ref)
    # Without wrapping: plain Euclidean distances, discs clipped at the edges.
    flat = disc_mask((ny, nx), centres, radii, periodic=False).numpy()
    yy, xx = np.mgrid[:ny, :nx]
    ref = np.ones((ny, nx))
    for (cy, cx), r in zip(centres, radii):
        ref[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0.0
    np.testing.assert_array_equal(flat, ref)


def test_point_source_mask_fraction_radius_and_seed():
    m = point_source_mask(64, fraction=0.10, radius=(2, 5), seed=3).numpy()
    masked = 1 - m.mean()
    # Holes are added until >= 10 %; the last hole adds at most pi 5^2 + perimeter pixels.
    assert 0.10 <= masked <= 0.10 + (np.pi * 25 + 2 * np.pi * 5) / 64**2
    np.testing.assert_array_equal(m, point_source_mask(64, fraction=0.10, seed=3).numpy())
    assert not np.array_equal(m, point_source_mask(64, fraction=0.10, seed=4).numpy())
    # One hole of fixed radius r: Gauss circle bound |N - pi r^2| <= 2 pi r + 1 lattice points.
    for seed in range(5):
        one = point_source_mask(64, 1, radius=4.0, seed=seed).numpy()
        assert abs((1 - one).sum() - np.pi * 16) <= 2 * np.pi * 4 + 1
    # Radii in arcmin on a sky geometry: 6' on 2' pixels is a 3-pixel radius.
    g = FlatGeometry(32, 2.0)
    a = point_source_mask(g, 1, radius=6.0, unit="arcmin", seed=1).numpy()
    b = point_source_mask(32, 1, radius=3.0, seed=1).numpy()
    np.testing.assert_array_equal(a, b)


def test_strip_mask_columns_rows_and_wrap():
    m = strip_mask((8, 10), 3, "vertical", position=8).numpy()
    ref = np.ones((8, 10))
    ref[:, [8, 9, 0]] = 0
    np.testing.assert_array_equal(m, ref)
    h = strip_mask((8, 10), 2, "horizontal", position=1).numpy()
    assert (h[[1, 2]] == 0).all() and (np.delete(h, [1, 2], axis=0) == 1).all()
    s = strip_mask(64, 6, seed=5).numpy()
    assert (s == 0).sum() == 6 * 64 and ((s == 0).all(0)).sum() == 6


@pytest.mark.parametrize("kind", ["cosine", "C1"])
def test_apodize_matches_brute_force_distance_taper(kind):
    n = 24
    mask = disc_mask(n, [(3.0, 20.0), (15.0, 9.0)], [2.5, 3.5]).numpy()
    R = 4.0
    out = apodize(torch.tensor(mask), R, kind=kind).numpy()
    holes = np.argwhere(mask == 0)
    ref = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if mask[i, j] == 0:
                continue
            dy = np.abs(holes[:, 0] - i)
            dx = np.abs(holes[:, 1] - j)
            d = np.sqrt(np.minimum(dy, n - dy) ** 2 + np.minimum(dx, n - dx) ** 2).min()
            x = min(d / R, 1.0)
            ref[i, j] = 0.5 * (1 - np.cos(np.pi * x)) if kind == "cosine" else x - np.sin(2 * np.pi * x) / (
                2 * np.pi)
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_apodize_batched_and_unmasked():
    masks = torch.stack([torch.ones(16, 16), strip_mask(16, 2, position=0)])
    out = apodize(masks, 3.0)
    assert out.shape == (2, 16, 16)
    assert (out[0] == 1).all() and (out[1][:, :2] == 0).all() and (out[1][:, 8] == 1).all()


def test_white_noise_spectrum_is_the_uk_arcmin_depth():
    g = FlatGeometry(64, 2.0)
    depth = 10.0  # uK-arcmin
    sigma = white_noise_level(depth, g)
    assert sigma == pytest.approx(5.0)  # 10 uK-arcmin in 2' pixels
    n_ell = white_noise_cl(depth)
    assert n_ell == pytest.approx((10 * np.pi / 180 / 60) ** 2)  # uK^2 sr
    noise = white_noise((30, 64, 64), sigma, torch.Generator().manual_seed(1), dtype=torch.float64)
    _, cl, counts = g.power_spectrum(noise, bins=8)
    cl = cl.mean(0).numpy()
    se = n_ell * np.sqrt(2 / (30 * counts.numpy()))
    assert np.all(np.abs(cl - n_ell) < 4 * se)
    s = noise_per_mode_spectrum(sigma, g)
    np.testing.assert_allclose(s.numpy(), n_ell / g.pixel_area)
    assert noise_per_mode_spectrum(torch.tensor([1.0, 2.0]), g, rfft=True).shape == (2, 64, 33)


def test_white_noise_is_seeded_and_inhomogeneous_noise_has_the_sigma_map():
    a = white_noise((4, 4), 2.0, torch.Generator().manual_seed(3))
    b = white_noise((4, 4), 2.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    sig = torch.linspace(0.5, 3.0, 16, dtype=torch.float64).reshape(4, 4)
    draws = inhomogeneous_noise(sig.expand(4000, 4, 4), torch.Generator().manual_seed(0))
    std = draws.std(0)
    # The sample std of 4000 normals has relative error 1/sqrt(2 * 4000) = 1.1 %.
    assert torch.all((std / sig - 1).abs() < 4 / math.sqrt(8000))


def test_errors_name_the_argument():
    g = FlatGeometry(8, 1.0)
    with pytest.raises(ValueError, match="fwhm_arcmin"):
        gaussian_beam(g, -1.0)
    with pytest.raises(ValueError, match="transfer"):
        convolve(torch.zeros(8, 8), torch.ones(7, 7))
    with pytest.raises(ValueError, match="n_sources"):
        point_source_mask(8)
    with pytest.raises(ValueError, match="kind"):
        apodize(torch.ones(8, 8), 2.0, kind="gauss")
    with pytest.raises(ValueError, match="geometry"):
        white_noise_level(1.0, FlatGeometry(8, 1.0, unit="Mpc/h"))


def test_convolve_and_apply_beam_boundary_checks():
    g = FlatGeometry(8, 1.0)
    refused(ValueError, "transfer", lambda: convolve(torch.zeros(8, 8), torch.full((8, 8), float("nan"))))
    refused(ValueError, "transfer",
             lambda: convolve(torch.zeros(8, 8), torch.full((8, 8), complex(1.0, float("inf")))))
    refused(ValueError, "transfer", lambda: convolve(torch.zeros(3, 8, 8), torch.ones(2, 8, 8)))
    refused(TypeError, "transfer", lambda: convolve(torch.zeros(8, 8), "x"))
    refused(TypeError, "geometry", lambda: apply_beam(torch.zeros(8, 8), None, 2.0))
    assert apply_beam(torch.zeros(8, 8), g, 2.0).shape == (8, 8)


def test_mask_builders_boundary_checks():
    refused(ValueError, "centres", lambda: disc_mask(8, [[float("nan"), 3.0]], 2))
    refused(ValueError, "centres", lambda: disc_mask(8, [1, 2, 3], 2))
    refused(ValueError, "radii", lambda: disc_mask(8, [[3, 3], [1, 1]], [1, 2, 3]))
    refused(ValueError, "grid", lambda: disc_mask(0, [[3, 3]], 1))
    refused(TypeError, "grid", lambda: disc_mask("8", [[3, 3]], 1))
    refused(ValueError, "n_sources", lambda: point_source_mask(8, n_sources=2.5))
    refused(ValueError, "n_sources", lambda: point_source_mask(8, n_sources=10**12))
    refused(ValueError, "width", lambda: strip_mask(8, float("nan")))
    refused(ValueError, "position", lambda: strip_mask(8, 2, position=float("nan")))


@pytest.mark.parametrize("periodic", [True, False])
def test_huge_disc_radius_is_clipped_and_masks_everything(periodic):
    # 1e6 px used to allocate a (2e6+1)^2 grid (29 TiB); a disc that large covers the whole map
    assert float(disc_mask(8, [[3.0, 3.0]], 1e6, periodic=periodic).sum()) == 0.0
    assert float(disc_mask((8, 6), [[3.0, 3.0]], 1e9, periodic=periodic).sum()) == 0.0
    # clipping keeps finite radii exact: compare with the brute force at a radius just below clipping
    ref = disc_mask(16, [[2.0, 5.0]], 9.5, periodic=periodic)
    yy, xx = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    dy, dx = yy - 2.0, xx - 5.0
    if periodic:
        dy, dx = (dy + 8) % 16 - 8, (dx + 8) % 16 - 8
    np.testing.assert_array_equal(ref.numpy(), (dy**2 + dx**2 > 9.5**2).astype(float))


def test_apodize_mask_range_and_kind_checked():
    refused(ValueError, "mask", lambda: apodize(torch.full((8, 8), 5.0), 2))
    refused(ValueError, "mask", lambda: apodize(torch.full((8, 8), -3.0), 2))
    refused(TypeError, "kind", lambda: apodize(torch.ones(8, 8), 2, kind=3))


def test_white_noise_shape_checked():
    refused(TypeError, "shape", lambda: white_noise(8))
    refused(ValueError, "shape", lambda: white_noise((-8, 8)))
    refused(ValueError, "sigma", lambda: white_noise((8, 8), torch.ones(3)))
    assert white_noise((2, 8, 8), torch.ones(8, 1)).shape == (2, 8, 8)
