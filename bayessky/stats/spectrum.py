"""Binned power spectrum of plain arrays: the FlatGeometry estimator with a default geometry."""

from __future__ import annotations

import numpy as np
import torch

from ..sky.geometry import FlatGeometry
from ._io import like_input, to_tensor

__all__ = ["power_spectrum"]


def power_spectrum(
    maps,
    geometry: FlatGeometry | None = None,
    bins: int | np.ndarray | torch.Tensor = 20,
    maps2=None,
    *,
    per_mode: bool = False,
):
    r"""Azimuthally binned auto (or cross) power spectrum of maps (..., ny, nx).

    This is :meth:`FlatGeometry.power_spectrum` for arrays without a geometry: with
    ``geometry=None`` the grid is in pixel units (``FlatGeometry(shape, 1, "pixel")``), so k is
    in rad/pixel and P(k) in map-units^2 pixel^2; white noise of variance sigma^2 has
    P = sigma^2. With a sky geometry the result is C_ell (map-units^2 sr) against ell, with a
    box geometry P(k) in (Mpc/h)^2 against k in h/Mpc.

    Returns:
        ``(k, power, counts)``: mean |k| per bin (nbins,), power (..., nbins), modes per bin;
        numpy arrays for numpy input, tensors for tensors.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> k, p, n = power_spectrum(rng.normal(0, 2, (8, 64, 64)), bins=4)
        >>> bool(np.allclose(p.mean(0), 4, rtol=0.05))
        True
    """
    t, is_numpy = to_tensor(maps, "maps")
    geometry = geometry or FlatGeometry(tuple(t.shape[-2:]), 1.0, unit="pixel")
    if maps2 is not None:
        maps2, _ = to_tensor(maps2, "maps2")
    k, p, n = geometry.power_spectrum(t, bins, maps2, per_mode=per_mode)
    return like_input(is_numpy, k, p, n)
