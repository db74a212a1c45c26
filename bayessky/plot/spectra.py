"""Power spectra with percentile bands over posterior or prior samples, and pixel histograms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ._save import maybe_save

__all__ = ["power_spectrum_bands", "pixel_histograms"]


def power_spectrum_bands(
    samples,
    geometry,
    data=None,
    truth=None,
    bins: int = 20,
    bands: Sequence[tuple[float, float]] = ((16, 84), (2.5, 97.5)),
    reference=None,
    reference_label: str = "reference",
    label: str = "samples",
    ell_weight: bool = True,
    out=None,
):
    """Binned power spectra of sample maps (S, H, W) as a median with percentile bands.

    ``data`` / ``truth`` maps are drawn as lines; ``reference`` is a second stack of maps (e.g.
    simulations) drawn with its own band. With ``ell_weight`` the y axis is ell(ell+1)C/2pi for sky
    geometries (and k P(k) for boxes) so red spectra stay readable.
    """
    import matplotlib.pyplot as plt

    for i, band in enumerate(bands):
        if np.ndim(band) != 1 or len(band) != 2 or not 0 <= band[0] < band[1] <= 100:
            raise ValueError(f"bands[{i}]: expected percentiles (lo, hi) with 0 <= lo < hi <= 100, "
                             f"got {band!r}")

    def spec(maps, name):
        if hasattr(maps, "detach"):
            maps = maps.detach().cpu()
        t = torch.as_tensor(np.asarray(maps, dtype=float))
        if t.ndim == 2:
            t = t[None]
        stack = name in ("samples", "reference")  # data / truth are one map each
        if t.ndim != 3 or tuple(t.shape[-2:]) != tuple(geometry.shape) or (not stack and len(t) != 1):
            ny, nx = geometry.shape
            want = f"(S, {ny}, {nx})" if stack else f"({ny}, {nx})"
            raise ValueError(f"{name}: expected maps of shape {want} (the geometry's), "
                             f"got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: {int((~torch.isfinite(t)).sum())} non-finite pixel values")
        k, p, _ = geometry.power_spectrum(t, bins)
        k, p = k.numpy(), p.numpy()
        if ell_weight:
            p = p * (k * (k + 1) / (2 * np.pi) if geometry.is_sky else k)
        return k, p

    fig, ax = plt.subplots(figsize=(5.5, 4))
    stacks = ((samples, "samples", label, "C0"), (reference, "reference", reference_label, "C1"))
    for maps, arg, name, color in stacks:
        if maps is None:
            continue
        k, p = spec(maps, arg)
        ax.plot(k, np.median(p, 0), color=color, label=f"{name} median")
        for i, (lo, hi) in enumerate(bands):
            ax.fill_between(k, np.percentile(p, lo, 0), np.percentile(p, hi, 0), color=color,
                            alpha=0.35 / (i + 1), lw=0)
    for maps, name, style in ((data, "data", "k-"), (truth, "truth", "k--")):
        if maps is not None:
            k, p = spec(maps, name)
            ax.plot(k, p[0], style, label=name, lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\ell$" if geometry.is_sky else r"$k$ [h/Mpc]")
    ax.set_ylabel(r"$\ell(\ell+1)C_\ell/2\pi$" if (ell_weight and geometry.is_sky)
                  else ("k P(k)" if ell_weight else "power"))
    ax.legend(frameon=False)
    fig.tight_layout()
    return maybe_save(fig, out)


def pixel_histograms(maps: Mapping[str, object], bins: int = 60, log: bool = True,
                     density: bool = True, out=None):
    """Overlaid pixel histograms of several named stacks of maps (e.g. samples vs simulations)."""
    import matplotlib.pyplot as plt

    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins: expected a positive number of bins, got {bins!r}")
    arrays = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float).ravel()
              for k, v in maps.items()}
    if not arrays:
        raise ValueError("maps: give at least one named stack of maps")
    for k, a in arrays.items():
        if a.size == 0:
            raise ValueError(f"maps[{k!r}]: empty stack of maps")
        if not np.isfinite(a).all():
            raise ValueError(f"maps[{k!r}]: {int((~np.isfinite(a)).sum())} non-finite pixel values")
    lo = min(float(a.min()) for a in arrays.values())
    hi = max(float(a.max()) for a in arrays.values())
    if hi == lo:  # constant maps: a unit-wide range around the value, as np.histogram does
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, a in arrays.items():
        ax.hist(a, bins=edges, density=density, histtype="step", label=name, lw=1.2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("pixel value")
    ax.set_ylabel("density" if density else "count")
    ax.legend(frameon=False)
    fig.tight_layout()
    return maybe_save(fig, out)
