"""Augmentation: every output is a symmetry image of its input (brute force), statistics preserved."""

import numpy as np
import pytest
import scipy.stats
import torch

from bayessky.data.augment import Augment, random_flip, random_rot90, random_shift


def _maps(b=6, c=1, h=8, w=8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(b, c, h, w)))


def _group_images(m: np.ndarray, rot: bool):
    """All images of one map (..., H, W) under flips (x) quarter turns (x) cyclic shifts, by numpy."""
    bases = []
    for k in range(4 if rot else 1):
        r = np.rot90(m, k, axes=(-2, -1))
        bases += [r, r[..., ::-1, :], r[..., :, ::-1], r[..., ::-1, ::-1]]
    for base in bases:
        for dy in range(m.shape[-2]):
            for dx in range(m.shape[-1]):
                yield np.roll(base, (dy, dx), axis=(-2, -1))


def _in_group(out: np.ndarray, inp: np.ndarray, rot: bool) -> bool:
    return any(np.array_equal(out, g) for g in _group_images(inp, rot))


@pytest.mark.parametrize("fn,rot", [(random_flip, False), (random_rot90, True), (random_shift, False),
                                    (Augment(), True)])
def test_outputs_are_symmetry_images(fn, rot):
    # independent reference: exhaustive search over numpy's flips, rot90 and roll of each input
    x = _maps(c=2)
    y = fn(x, torch.Generator().manual_seed(3)).numpy()
    for i in range(x.shape[0]):
        assert _in_group(y[i], x[i].numpy(), rot)  # both channels moved together


def test_rectangular_maps():
    x = _maps(h=4, w=6)
    y = Augment()(x, torch.Generator().manual_seed(1)).numpy()  # "auto": no quarter turns
    for i in range(x.shape[0]):
        assert _in_group(y[i], x[i].numpy(), rot=False)
    with pytest.raises(ValueError, match="square"):
        random_rot90(x)


def test_pixel_histogram_and_power_spectrum_preserved():
    # a pixel permutation keeps the sorted pixel values exactly; flips/turns/shifts permute the
    # DFT modes within |k| shells and multiply by phases, so the multiset of |FFT|^2 is the same
    x = _maps(b=16, h=16, w=16, seed=5)
    y = Augment()(x, torch.Generator().manual_seed(9)).numpy()
    xn = x.numpy()
    np.testing.assert_array_equal(np.sort(y.reshape(16, -1), axis=1), np.sort(xn.reshape(16, -1), axis=1))
    px = np.sort((np.abs(np.fft.fft2(xn)) ** 2).reshape(16, -1), axis=1)
    py = np.sort((np.abs(np.fft.fft2(y)) ** 2).reshape(16, -1), axis=1)
    np.testing.assert_allclose(py, px, rtol=1e-10, atol=1e-10 * px.max())  # FFT rounding only


def test_determinism_by_seed():
    x = _maps()
    a = Augment()(x, torch.Generator().manual_seed(7))
    b = Augment()(x, torch.Generator().manual_seed(7))
    c = Augment()(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_draws_are_uniform():
    # one hot pixel in a 4x4 map: its position after a random shift is uniform over 16 cells;
    # chi-square goodness of fit with 15 dof, reject only at p < 1e-3 (false alarm 0.1 %)
    x = torch.zeros(4000, 1, 4, 4)
    x[:, 0, 0, 0] = 1
    pos = random_shift(x, torch.Generator().manual_seed(0)).reshape(4000, 16).argmax(1)
    counts = np.bincount(pos.numpy(), minlength=16)
    assert scipy.stats.chisquare(counts).pvalue > 1e-3
    # quarter turns of an asymmetric 2x2 map: the four orientations equally often
    base = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(4000, 1, 2, 2)
    corner = random_rot90(base, torch.Generator().manual_seed(1))[:, 0, 0, 0].long().numpy()
    assert scipy.stats.chisquare(np.bincount(corner, minlength=5)[1:]).pvalue > 1e-3


def test_flips_are_uniform_over_the_four_flip_images():
    # an asymmetric 2x2 map has four distinct flip images (numpy's, independent of the code under
    # test); with each axis flipped independently with probability 1/2 each appears 1/4 of the
    # time. The identity, a single axis or perfectly correlated flips would fill 1 or 2 of the
    # bins. Chi-square with 3 dof, reject at p < 1e-3.
    m = np.array([[1.0, 2.0], [3.0, 4.0]])
    images = np.stack([m, m[::-1, :], m[:, ::-1], m[::-1, ::-1]])  # (4, 2, 2), all distinct
    base = torch.from_numpy(m).expand(4000, 1, 2, 2)
    out = random_flip(base, torch.Generator().manual_seed(2))[:, 0].numpy()
    match = np.all(out[:, None] == images[None], axis=(-2, -1))  # (4000, 4)
    assert np.all(match.sum(1) == 1)  # every output is exactly one of the flip images
    counts = match.sum(0)
    assert scipy.stats.chisquare(counts).pvalue > 1e-3, counts

def test_refusals():
    with pytest.raises(ValueError, match="maps"):
        random_shift(torch.zeros(8, 8))
    with pytest.raises(TypeError, match="maps"):
        random_flip(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="rot90"):
        Augment(rot90="sometimes")
