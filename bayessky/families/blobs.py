"""Gaussian-blob image sets: 1, 10, 50 or 1000 blobs at uniform centres (S. Goel, "Understanding
Machine Learning Generative Models - GANs and VAEs", chapter 6).

The four sets test generative priors on point-source-like fields. Each image is a sum of
circular Gaussian profiles ``a_k exp(-|x - c_k|^2 / (2 sigma^2))`` with centres ``c_k`` uniform
over the image. The per-set rules of that chapter:

- ``1`` blob: unit amplitude (pixel values in [0, 1]).
- ``10`` blobs: equal amplitudes, then each image is multiplied by the factor that makes its
  maximum pixel exactly 1.
- ``50`` blobs: unit amplitudes, not rescaled (overlaps exceed 1).
- ``1000`` blobs: amplitudes from a folded Gaussian ``|N(0, 1)|`` with a threshold applied to
  each blob's intensity, not rescaled.

The chapter gives no numbers for the folded Gaussian or the threshold; bayessky reads "a
threshold was applied" as a detection-style cut: blobs fainter than ``threshold`` (default 0.5,
which removes 38 % of them) get amplitude 0. The image size (128) follows the chapter's 128 x 128
images; sigma = 2 px (about 2 px in the chapter's figures).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_memory, check_positive

__all__ = ["SETS", "VERSION", "sample", "render"]

VERSION = "blobs-v1"
# n_blobs -> rule; "unit": amplitude 1; "rescale": amplitude 1 then max pixel = 1; "folded": |N(0,1)|
# thresholded.
SETS = {1: "unit", 10: "rescale", 50: "unit", 1000: "folded"}


def render(centres: np.ndarray, amplitudes: np.ndarray, size: int, sigma: float = 2.0,
           periodic: bool = False) -> np.ndarray:
    r"""Images ``sum_k a_k exp(-|x - c_k|^2 / (2 sigma^2))`` on pixel centres ``x = (row, col)``.

    Arguments:
        centres: (n, K, 2) blob centres (row, column) in pixels. amplitudes: (n, K).
        size: pixels per side. sigma: blob width in pixels.
        periodic: wrap distances on the torus (nearest image only, exact to exp(-size^2 / 8 sigma^2)).

    Returns:
        numpy float64 (n, size, size).
    """
    centres = np.asarray(centres, dtype=float)
    amplitudes = np.asarray(amplitudes, dtype=float)
    pix = np.arange(size, dtype=float)
    d = pix[None, None, :] - centres[..., None]             # (n, K, 2, size)
    if periodic:
        d = (d + size / 2) % size - size / 2
    prof = np.exp(-(d**2) / (2 * sigma**2))
    gy, gx = prof[:, :, 0], prof[:, :, 1]                      # (n, K, size)
    # separable profiles: image = (a * gy)^T gx, one (size, K) x (K, size) product per image
    return np.einsum("nky,nkx->nyx", amplitudes[..., None] * gy, gx, optimize=True)


#: bytes per pixel :func:`sample` holds at its peak for the images (float64, with einsum's buffers),
#: checked against the available memory before anything is drawn
PEAK_BYTES_PER_PIXEL = 32


def sample(
    n_maps: int,
    n_blobs: int,
    size: int = 128,
    sigma: float = 2.0,
    seed=None,
    *,
    rule: str | None = None,
    threshold: float = 0.5,
    periodic: bool = False,
    return_params: bool = False,
):
    """Draw ``n_maps`` blob images of one of the seed-003 sets.

    Random numbers come from ``numpy.random.default_rng(seed)`` (or a Generator), in this order:
    centres ``uniform(-0.5, size - 0.5, (n_maps, n_blobs, 2))`` (uniform over the image area,
    pixel ``i`` covering [i - 0.5, i + 0.5)), then for the ``"folded"`` rule the amplitudes
    ``|normal(0, 1, (n_maps, n_blobs))|``.

    Arguments:
        n_maps: number of images. n_blobs: 1, 10, 50 or 1000 (the chapter's sets), or any count
            with an explicit ``rule``.
        size: pixels per side. sigma: blob width (standard deviation) in pixels.
        rule: ``"unit"``, ``"rescale"`` or ``"folded"``; default: the set's own rule (``SETS``).
        threshold: folded-Gaussian amplitudes below this are set to 0.
        periodic: wrap blobs around the edges (default: plain images, as in the chapter).
        return_params: also return ``centres`` (n_maps, n_blobs, 2) and the final ``amplitudes``
            (n_maps, n_blobs), after rescaling, so that ``render(centres, amplitudes)`` is the image.

    Returns:
        numpy float64 (n_maps, size, size), or ``(maps, centres, amplitudes)``.
    """
    n_maps, n_blobs, size = int(n_maps), int(n_blobs), int(size)
    if n_maps < 1:
        raise ValueError(f"n_maps: expected >= 1, got {n_maps}")
    if size < 2:
        raise ValueError(f"size: expected >= 2, got {size}")
    # the images, and the per-blob profiles (n_maps, n_blobs, 2, size) of :func:`render`
    check_memory(n_maps * (PEAK_BYTES_PER_PIXEL * size * size + 32 * max(n_blobs, 0) * size), "n_maps/size")
    if rule is None:
        if n_blobs not in SETS:
            raise ValueError(f"n_blobs: expected one of {sorted(SETS)} (or pass rule=), got {n_blobs}")
        rule = SETS[n_blobs]
    if rule not in ("unit", "rescale", "folded"):
        raise ValueError(f"rule: expected 'unit', 'rescale' or 'folded', got {rule!r}")
    if n_blobs < 1:
        raise ValueError(f"n_blobs: expected >= 1, got {n_blobs}")
    check_positive(sigma, "sigma")
    check_positive(threshold, "threshold", strict=False)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    centres = rng.uniform(-0.5, size - 0.5, size=(n_maps, n_blobs, 2))
    if rule == "folded":
        amp = np.abs(rng.normal(0.0, 1.0, size=(n_maps, n_blobs)))
        amp = np.where(amp >= threshold, amp, 0.0)
    else:
        amp = np.ones((n_maps, n_blobs))
    maps = render(centres, amp, size, sigma, periodic)
    if rule == "rescale":
        scale = 1.0 / maps.max(axis=(1, 2))
        maps = maps * scale[:, None, None]
        amp = amp * scale[:, None]
    return (maps, centres, amp) if return_params else maps
