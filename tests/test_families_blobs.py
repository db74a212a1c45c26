"""Blob sets (Goel, GANs and VAEs thesis, chapter 6): profiles, counts by peak finding, amplitude rules."""

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from bayessky.families import blobs


def peaks(img, floor=1e-3):
    """Strict 8-neighbour local maxima above ``floor`` (the chapter's peak finder), via scipy."""
    mx = ndimage.maximum_filter(img, size=3, mode="constant", cval=-np.inf)
    cnt = ndimage.generic_filter(img, lambda v: np.sum(v == v[4]), size=3, mode="constant", cval=-1)
    return np.argwhere((img == mx) & (cnt == 1) & (img > floor))


def test_single_blob_profile_marginals_and_flux():
    maps, c, a = blobs.sample(40, 1, size=48, sigma=2.0, seed=0, return_params=True)
    assert np.all(a == 1.0) and maps.max() <= 1.0 and maps.min() >= 0.0
    done = 0
    for img, (cy, cx) in zip(maps, c[:, 0]):
        # pixel-by-pixel closed form
        ref = np.array([[math.exp(-((i - cy) ** 2 + (j - cx) ** 2) / 8.0) for j in range(48)]
                        for i in range(48)])
        assert np.abs(img - ref).max() < 1e-12
        if min(cy, cx) > 14 and max(cy, cx) < 33:   # >= 7 sigma from the edges
            col = img.sum(axis=0)
            x = np.arange(48)
            mean = (col * x).sum() / col.sum()
            var = (col * (x - mean) ** 2).sum() / col.sum()
            # sampled Gaussian: moments and flux exact up to exp(-2 pi^2 sigma^2) (Poisson summation)
            assert abs(mean - cx) < 1e-9 and abs(var - 4.0) < 1e-9
            assert abs(img.sum() - 2 * math.pi * 4.0) < 1e-9
            found = peaks(img)
            assert len(found) == 1 and np.array_equal(found[0], np.round([cy, cx]))
            done += 1
    assert done >= 5


def test_ten_blobs_rescaled_and_counted():
    maps, c, a = blobs.sample(60, 10, size=128, sigma=2.0, seed=1, return_params=True)
    assert np.allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-12)
    # equal intensities within an image, rescaled by one factor
    assert np.allclose(a, a[:, :1])
    checked = 0
    for img, cc in zip(maps, c):
        d = np.sqrt(((cc[:, None, :] - cc[None, :, :]) ** 2).sum(-1)) + np.eye(10) * 1e9
        if d.min() > 10 and cc.min() > 2 and cc.max() < 125:   # well separated (> 5 sigma), interior
            assert len(peaks(img)) == 10
            checked += 1
    assert checked >= 5


def test_fifty_blobs_not_rescaled():
    maps, c, a = blobs.sample(5, 50, size=64, seed=2, return_params=True)
    assert np.all(a == 1.0)
    assert np.allclose(maps, blobs.render(c, a, 64, 2.0), atol=0)
    # overlaps push some images above 1, which the 10-blob rule would have removed
    assert maps.max() > 1.0
    assert all(len(peaks(m)) <= 50 for m in maps)


def test_thousand_blobs_folded_thresholded():
    _, _, a = blobs.sample(4, 1000, size=64, seed=3, return_params=True)
    a = a.ravel()
    zero = a == 0
    assert np.all(a[~zero] >= 0.5)
    # P(|z| < 0.5) = 0.3829; binomial sd over 4000 blobs = 0.0077, bound 5 sd
    p = 2 * stats.norm.cdf(0.5) - 1
    assert abs(zero.mean() - p) < 5 * math.sqrt(p * (1 - p) / a.size)
    # kept amplitudes: |N(0,1)| conditioned on >= 0.5 = standard normal truncated to [0.5, inf)
    assert stats.kstest(a[~zero], stats.truncnorm(0.5, np.inf).cdf).pvalue > 1e-3


def test_reproducible_periodic_and_errors():
    a = blobs.sample(2, 10, size=32, seed=5)
    assert np.array_equal(a, blobs.sample(2, 10, size=32, seed=5))
    assert not np.array_equal(a, blobs.sample(2, 10, size=32, seed=6))
    # periodic: a blob at the corner wraps to the opposite edges
    img = blobs.render(np.array([[[0.0, 0.0]]]), np.ones((1, 1)), 16, 2.0, periodic=True)[0]
    assert img[15, 15] == pytest.approx(math.exp(-2 / 8.0))
    assert img[0, 15] == pytest.approx(math.exp(-1 / 8.0))
    assert blobs.sample(1, 3, size=16, seed=0, rule="unit").shape == (1, 16, 16)
    with pytest.raises(ValueError, match="n_blobs"):
        blobs.sample(1, 7, size=16)
    with pytest.raises(ValueError, match="rule"):
        blobs.sample(1, 10, size=16, rule="bogus")
    with pytest.raises(ValueError, match="sigma"):
        blobs.sample(1, 10, size=16, sigma=0)
