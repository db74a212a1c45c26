"""bayessky.plot figures other than corner: what each panel shows, checked against numpy.

Spectra are recomputed here with numpy FFTs, histograms with np.histogram, ranks with
scipy.stats.rankdata; map panels are compared with the arrays given.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import rankdata  # noqa: E402

from bayessky.plot import pixel_histograms, posterior_maps, power_spectrum_bands, rank, trace  # noqa: E402
from bayessky.sky import FlatGeometry  # noqa: E402

ARCMIN = np.pi / 180 / 60


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# -- numpy references ---------------------------------------------------------------------------

def _np_spectrum(maps, n, dx, bins):
    """Binned |FFT|^2 of (S, n, n) maps: linear bins from k_f / 2 to the grid corner + k_f / 2."""
    k1 = 2 * np.pi * np.fft.fftfreq(n, dx)
    kk = np.hypot(k1[:, None], k1[None, :]).ravel()
    kf = 2 * np.pi / (n * dx)
    edges = np.linspace(kf / 2, kk.max() + kf / 2, bins + 1)
    p2d = (np.abs(np.fft.fft2(maps)) ** 2 / n**2 * dx**2).reshape(len(maps), -1)
    idx = np.digitize(kk, edges) - 1
    k = np.array([kk[idx == b].mean() for b in range(bins)])
    p = np.stack([p2d[:, idx == b].mean(1) for b in range(bins)], axis=1)
    return k, p


def _red_maps(rng, s, n):
    """Maps with a steep spectrum (smoothed white noise) and a per-map amplitude spread."""
    k1 = np.fft.fftfreq(n)
    filt = 1.0 / (0.05 + np.hypot(k1[:, None], k1[None, :])) ** 1.5
    white = rng.normal(size=(s, n, n)) * rng.uniform(0.5, 2.0, size=(s, 1, 1))
    return np.fft.ifft2(np.fft.fft2(white) * filt).real


def _band_limits(coll, k):
    """(lo, hi) of a fill_between collection at each x in k, read off its polygon vertices."""
    v = np.concatenate([p.vertices for p in coll.get_paths()])
    lo = np.array([v[np.isclose(v[:, 0], x, rtol=1e-12), 1].min() for x in k])
    hi = np.array([v[np.isclose(v[:, 0], x, rtol=1e-12), 1].max() for x in k])
    return lo, hi


# -- power spectrum bands ------------------------------------------------------------------------

@pytest.mark.parametrize("unit, pixel, ell_weight", [("arcmin", 2.0, True), ("Mpc/h", 0.5, True),
                                                      ("arcmin", 2.0, False)])
def test_spectrum_median_bands_and_data_lines_match_numpy(unit, pixel, ell_weight):
    n, s, bins = 16, 41, 6
    rng = np.random.default_rng(1)
    samples, data, truth = _red_maps(rng, s, n), _red_maps(rng, 1, n)[0], _red_maps(rng, 1, n)[0]
    g = FlatGeometry(n, pixel, unit=unit)
    dx = pixel * (ARCMIN if unit == "arcmin" else 1.0)
    k, p = _np_spectrum(samples, n, dx, bins)
    _, pd = _np_spectrum(data[None], n, dx, bins)
    _, pt = _np_spectrum(truth[None], n, dx, bins)
    w = (k * (k + 1) / (2 * np.pi) if unit == "arcmin" else k) if ell_weight else np.ones_like(k)

    bands = ((16, 84), (2.5, 97.5))
    fig = power_spectrum_bands(torch.tensor(samples), g, data=data, truth=truth, bins=bins,
                               bands=bands, ell_weight=ell_weight)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"samples median", "data", "truth"}
    np.testing.assert_allclose(lines["samples median"].get_xdata(), k, rtol=1e-10)
    np.testing.assert_allclose(lines["samples median"].get_ydata(), np.median(p, 0) * w, rtol=1e-9)
    np.testing.assert_allclose(lines["data"].get_ydata(), pd[0] * w, rtol=1e-9)
    np.testing.assert_allclose(lines["truth"].get_ydata(), pt[0] * w, rtol=1e-9)
    assert len(ax.collections) == len(bands)
    for coll, (qlo, qhi) in zip(ax.collections, bands):
        lo, hi = _band_limits(coll, k)
        np.testing.assert_allclose(lo, np.percentile(p, qlo, 0) * w, rtol=1e-9)
        np.testing.assert_allclose(hi, np.percentile(p, qhi, 0) * w, rtol=1e-9)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_spectrum_reference_stack_gets_its_own_median_and_band():
    n, bins = 16, 5
    rng = np.random.default_rng(2)
    samples, ref = _red_maps(rng, 21, n), 3.0 * _red_maps(rng, 33, n)
    g = FlatGeometry(n, 2.0)
    k, pr = _np_spectrum(ref, n, 2.0 * ARCMIN, bins)
    w = k * (k + 1) / (2 * np.pi)
    fig = power_spectrum_bands(samples, g, reference=ref, reference_label="sims", bins=bins,
                               bands=((10, 90),))
    ax = fig.axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "sims median")
    np.testing.assert_allclose(line.get_ydata(), np.median(pr, 0) * w, rtol=1e-9)
    lo, hi = _band_limits(ax.collections[1], k)  # the samples' band is drawn first
    np.testing.assert_allclose(lo, np.percentile(pr, 10, 0) * w, rtol=1e-9)
    np.testing.assert_allclose(hi, np.percentile(pr, 90, 0) * w, rtol=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(samples=np.zeros((3, 16, 8))), r"^samples: expected maps of shape \(S, 16, 16\)"),
    (dict(data=np.zeros((16, 8))), r"^data: expected maps of shape \(16, 16\)"),
    (dict(truth=np.zeros((2, 16, 16))), r"^truth: expected maps of shape \(16, 16\)"),
    (dict(reference=np.zeros((4, 8, 16))), r"^reference: expected maps of shape \(S, 16, 16\)"),
    (dict(data=np.full((16, 16), np.nan)), r"^data: 256 non-finite"),
    (dict(bands=((16, 184),)), r"^bands\[0\]: expected percentiles"),
    (dict(bands=((16, 84), (97.5, 2.5))), r"^bands\[1\]: expected percentiles"),
    (dict(bins=0), r"^bins: "),
])
def test_spectrum_bad_inputs_name_the_argument(kwargs, match):
    args = dict(samples=np.random.default_rng(0).normal(size=(3, 16, 16)), geometry=FlatGeometry(16, 2.0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match) as err:
        power_spectrum_bands(**args)
    assert "\n" not in str(err.value)


# -- pixel histograms ----------------------------------------------------------------------------

def _step_heights_and_edges(poly):
    xy = poly.get_xy()  # (e0, 0), (e0, h0), (e1, h0), (e1, h1), ..., (en, h_{n-1}), (en, 0)
    return xy[1:-1:2, 1], np.append(xy[1:-1:2, 0], xy[-1, 0])


@pytest.mark.parametrize("density", [True, False])
def test_pixel_histograms_are_np_histogram_on_shared_edges_in_order(density):
    rng = np.random.default_rng(3)
    stacks = {"wide": rng.normal(0.0, 2.0, size=(4, 8, 8)), "shifted": rng.normal(3.0, 0.5, size=(2, 8, 8))}
    allpix = np.concatenate([a.ravel() for a in stacks.values()])
    edges = np.linspace(allpix.min(), allpix.max(), 13)
    fig = pixel_histograms({k: torch.tensor(v) for k, v in stacks.items()}, bins=12, density=density)
    ax = fig.axes[0]
    assert [p.get_label() for p in ax.patches] == list(stacks)
    for poly, a in zip(ax.patches, stacks.values()):
        heights, got_edges = _step_heights_and_edges(poly)
        ref, _ = np.histogram(a.ravel(), bins=edges, density=density)
        np.testing.assert_allclose(got_edges, edges, rtol=1e-12)
        np.testing.assert_allclose(heights, ref, rtol=1e-12)
    assert ax.get_yscale() == "log" and ax.get_ylabel() == ("density" if density else "count")


def test_pixel_histogram_of_constant_maps_has_all_pixels_in_one_bin():
    fig = pixel_histograms({"zeros": np.zeros((2, 4, 4))}, bins=5, density=False, log=False)
    heights, edges = _step_heights_and_edges(fig.axes[0].patches[0])
    np.testing.assert_allclose(edges, np.linspace(-0.5, 0.5, 6))
    np.testing.assert_array_equal(heights, [0, 0, 32, 0, 0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(maps={}), r"^maps: give at least one"),
    (dict(maps={"a": np.array([0.0, np.nan, np.inf])}), r"^maps\['a'\]: 2 non-finite"),
    (dict(maps={"a": np.ones(3), "b": np.array([])}), r"^maps\['b'\]: empty"),
    (dict(maps={"a": np.ones(3)}, bins=0), r"^bins: expected a positive"),
    (dict(maps={"a": np.ones(3)}, bins=2.5), r"^bins: expected a positive"),
])
def test_pixel_histogram_bad_inputs_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        pixel_histograms(**kwargs)
    assert "\n" not in str(err.value)


# -- posterior maps ------------------------------------------------------------------------------

def _maps(n=10):
    rng = np.random.default_rng(4)
    truth = rng.normal(size=(n, n))
    mean = truth + 0.3 * rng.normal(size=(n, n))
    std = rng.uniform(0.1, 0.5, size=(n, n))
    mask = np.ones((n, n))
    mask[:, :3] = 0.0  # columns 0..2 masked: the boundary is the vertical line x = 2.5
    data = truth + 0.1 * rng.normal(size=(n, n))
    return mean, std, data, truth, mask


def _images(fig):
    return {ax.get_title(): ax.get_images()[0] for ax in fig.axes if ax.get_images()}


def test_map_panels_show_the_given_arrays_with_the_mask_drawn():
    mean, std, data, truth, mask = _maps()
    data[mask < 0.5] = -1e30  # a sentinel under the mask must not reach the colour range
    data[0, 0] = np.nan
    fig = posterior_maps(torch.tensor(mean)[None], std, data=data, truth=truth, mask=mask)
    ims = _images(fig)
    assert list(ims) == ["data", "truth", "posterior mean", "posterior std", "mean - truth"]
    np.testing.assert_array_equal(ims["posterior mean"].get_array(), mean)
    np.testing.assert_array_equal(ims["posterior std"].get_array(), std)
    np.testing.assert_array_equal(ims["truth"].get_array(), truth)
    np.testing.assert_allclose(ims["mean - truth"].get_array(), mean - truth, rtol=0, atol=0)
    # data: masked exactly where mask == 0, the observed pixels as given
    shown = ims["data"].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), mask < 0.5)
    np.testing.assert_array_equal(shown.data[mask > 0.5], data[mask > 0.5])
    # masked pixels are drawn grey (0.7), observed ones in the colour map
    rgba = ims["data"].to_rgba(shown)
    np.testing.assert_allclose(rgba[mask < 0.5], np.broadcast_to(to_rgba("0.7"), (30, 4)), atol=1e-6)
    assert not np.allclose(rgba[mask > 0.5], to_rgba("0.7"), atol=1e-3)
    # data, truth and mean share one colour range over the observed pixels; the residual is symmetric
    shared = np.concatenate([data[mask > 0.5], truth.ravel(), mean.ravel()])
    for name in ("data", "truth", "posterior mean"):
        assert ims[name].get_clim() == pytest.approx((shared.min(), shared.max()), rel=1e-12)
    lim = np.abs(mean - truth).max()
    assert ims["mean - truth"].get_clim() == pytest.approx((-lim, lim), rel=1e-12)
    # the mask boundary (x = 2.5, between columns 2 and 3) is drawn on every panel
    for ax in fig.axes:
        if not ax.get_images():
            continue  # colour bars
        cs = [c for c in ax.collections if isinstance(c, ContourSet)]
        assert len(cs) == 1 and list(cs[0].levels) == [0.5]
        pts = np.concatenate(cs[0].allsegs[0])
        np.testing.assert_allclose(pts[:, 0], 2.5, atol=1e-12)
        assert pts[:, 1].min() <= 0 and pts[:, 1].max() >= 9


def test_without_truth_or_mask_there_is_no_residual_and_no_contour():
    mean, std, data, _, _ = _maps()
    fig = posterior_maps(mean, std, data=data)
    ims = _images(fig)
    assert list(ims) == ["data", "posterior mean", "posterior std"]
    np.testing.assert_array_equal(ims["data"].get_array(), data)
    assert not any(isinstance(c, ContourSet) for ax in fig.axes for c in ax.collections)


@pytest.mark.parametrize("which, bad, match", [
    ("std", np.ones((10, 9)), r"^std: shape \(10, 9\) does not match mean's \(10, 10\)"),
    ("data", np.ones((9, 10)), r"^data: shape \(9, 10\) does not match mean's"),
    ("truth", np.ones((1, 10, 9)), r"^truth: shape \(10, 9\) does not match"),
    ("mask", np.ones((10, 11)), r"^mask: shape \(10, 11\) does not match"),
    ("mean", np.ones((2, 10, 10)), r"^mean: expected a 2-D map"),
    ("std", np.full((10, 10), np.nan), r"^std: 100 non-finite values"),
    ("mean", np.where(np.eye(10) > 0, np.inf, 0.0), r"^mean: 10 non-finite values"),
    ("data", np.where(np.eye(10) > 0, np.nan, 0.0), r"^data: 7 non-finite values in observed"),
])
def test_map_bad_inputs_name_the_argument(which, bad, match):
    mean, std, data, truth, mask = _maps()
    args = dict(mean=mean, std=std, data=data, truth=truth, mask=mask)
    args[which] = bad
    with pytest.raises(ValueError, match=match) as err:
        posterior_maps(**args)
    assert "\n" not in str(err.value)


def test_nan_data_without_a_mask_is_refused():
    mean, std, data, _, _ = _maps()
    data[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"^data: 1 non-finite values in pixels"):
        posterior_maps(mean, std, data=data)


# -- trace and rank ------------------------------------------------------------------------------

def _idata(chains=3, draws=40):
    rng = np.random.default_rng(5)
    post = {"a": rng.normal(size=(chains, draws)),
            "b": rng.normal(size=(chains, draws)) + np.arange(chains)[:, None],  # chains disagree
            "field": rng.normal(size=(chains, draws, 4))}  # not scalar: left out by default
    return az.from_dict(posterior=post), post


def test_trace_has_one_line_per_chain_with_the_draws():
    idata, post = _idata()
    fig = trace(idata)
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes).reshape(-1, 2)  # rows of (density, trace)
    assert [row[1].get_title() for row in axes] == ["a", "b"]
    for (dens, tr), name in zip(axes, ("a", "b")):
        lines = tr.get_lines()
        assert len(lines) == 3
        for c, line in enumerate(lines):
            np.testing.assert_array_equal(line.get_xdata(), np.arange(40))
            np.testing.assert_array_equal(line.get_ydata(), post[name][c])
        # one density per chain (not one pooled): each spans its own chain's draws, unit area
        kdes = dens.get_lines()
        assert len(kdes) == 3
        for c, line in enumerate(kdes):
            x, y, draws = line.get_xdata(), line.get_ydata(), post[name][c]
            span = np.ptp(draws)
            assert abs(x.min() - draws.min()) < 0.02 * span and abs(x.max() - draws.max()) < 0.02 * span
            assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.02)
    assert [ax.get_title() for ax in trace(idata, var_names=["b"]).axes] == ["b", "b"]


def test_rank_bars_are_histograms_of_pooled_ranks_per_chain():
    idata, post = _idata()
    fig = rank(idata)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    for ax, name in zip(fig.axes, ("a", "b")):
        ranks = rankdata(post[name].ravel()).reshape(post[name].shape)  # ranks over all chains
        bars = ax.patches
        nb = len(bars) // 3
        assert nb * 3 == len(bars) and nb >= 2
        for c in range(3):
            mine = bars[c * nb:(c + 1) * nb]
            edges = np.append([b.get_x() for b in mine], mine[-1].get_x() + mine[-1].get_width())
            counts, _ = np.histogram(ranks[c], bins=edges)
            heights = np.array([b.get_height() for b in mine])
            np.testing.assert_allclose(heights / heights.sum(), counts / counts.sum(), rtol=1e-9)
    # chains of b are offset by 1: chain 0 holds the low ranks, chain 2 the high ones
    b_bars = fig.axes[1].patches
    nb = len(b_bars) // 3
    assert b_bars[0].get_height() > b_bars[nb - 1].get_height()
    assert b_bars[3 * nb - 1].get_height() > b_bars[2 * nb].get_height()


# -- out= ----------------------------------------------------------------------------------------

def _calls():
    mean, std, _, _, mask = _maps()
    idata, _ = _idata()
    maps3 = np.random.default_rng(6).normal(size=(5, 16, 16))
    return {
        "trace": lambda out: trace(idata, var_names=["a"], out=out),
        "rank": lambda out: rank(idata, var_names=["a"], out=out),
        "maps": lambda out: posterior_maps(mean, std, mask=mask, out=out),
        "spectra": lambda out: power_spectrum_bands(maps3, FlatGeometry(16, 2.0), bins=5, out=out),
        "histograms": lambda out: pixel_histograms({"x": maps3}, out=out),
    }


@pytest.mark.parametrize("name", ["trace", "rank", "maps", "spectra", "histograms"])
def test_out_writes_a_png_of_the_returned_figure(name, tmp_path, monkeypatch):
    saved = []
    orig = Figure.savefig

    def spy(self, *args, **kwargs):
        saved.append(self)
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    path = tmp_path / f"{name}.png"
    fig = _calls()[name](path)
    assert isinstance(fig, Figure) and saved == [fig]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 1000
    img = plt.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 100
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 20  # not a blank canvas
