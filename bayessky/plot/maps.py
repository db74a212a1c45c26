"""Posterior map panels: data, truth, posterior mean, std and residual, with the mask drawn."""

from __future__ import annotations

import numpy as np

from ._save import maybe_save

__all__ = ["posterior_maps"]


def _np(x, name: str = "maps"):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=float)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D map (or 1 x H x W), got shape {x.shape}")
    return x


def _check_finite(x, name: str, where=None) -> None:
    bad = ~np.isfinite(x) if where is None else ~np.isfinite(x) & where
    if bad.any():
        extra = " observed" if where is not None else ""
        raise ValueError(f"{name}: {int(bad.sum())} non-finite values in{extra} pixels")


def posterior_maps(mean, std=None, data=None, truth=None, mask=None, title: str | None = None,
                   cmap: str = "viridis", units: str | None = None, out=None):
    """Panels of (data, truth, posterior mean, posterior std, residual = mean - truth), each with a
    colour bar labelled with ``units``.

    Arguments:
        mean, std: posterior mean and standard deviation maps (H, W); ``std=None`` (a MAP point,
            which has no spread) leaves out the std panel and titles the mean "MAP estimate".
        data: observed map; masked pixels (mask == 0) are greyed out and left out of the colour
            range, so they may hold NaN or sentinel values; observed pixels must be finite.
        truth: true map, when known; adds the truth and residual panels.
        mask: 1 = observed, 0 = masked; its boundary is drawn on every panel.
        units: the maps' units, e.g. ``"MJy/sr"`` or ``"uK"``; the colour bars say "map units"
            when not given.
    """
    names = ("mean", "std", "data", "truth", "mask")
    mean, std, data, truth, mask = (_np(x, n) for x, n in zip((mean, std, data, truth, mask), names))
    for x, n in zip((std, data, truth, mask), names[1:]):
        if x is not None and x.shape != mean.shape:
            raise ValueError(f"{n}: shape {x.shape} does not match mean's {mean.shape}")
    for x, n in ((mean, "mean"), (std, "std"), (truth, "truth"), (mask, "mask")):
        if x is not None:
            _check_finite(x, n)
    if data is not None:  # masked pixels may hold NaN / sentinels: only observed ones must be finite
        _check_finite(data, "data", where=None if mask is None else mask >= 0.5)
    panels = []
    if data is not None:
        d = np.ma.masked_where(mask < 0.5, data) if mask is not None else data
        panels.append(("data", d, cmap))
    if truth is not None:
        panels.append(("truth", truth, cmap))
    panels.append(("posterior mean" if std is not None else "MAP estimate", mean, cmap))
    if std is not None:
        panels.append(("posterior std", std, "magma"))
    if truth is not None:
        panels.append(("mean - truth", mean - truth, "RdBu_r"))
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    shared = [p[1] for p in panels if p[0] in ("data", "truth", "posterior mean", "MAP estimate")]
    vmin = min(float(np.nanmin(p)) for p in shared)
    vmax = max(float(np.nanmax(p)) for p in shared)
    for ax, (name, img, cm) in zip(axes[0], panels):
        if name == "mean - truth":
            lim = float(np.nanmax(np.abs(img))) or 1.0
            kw = dict(vmin=-lim, vmax=lim)
        elif name == "posterior std":
            kw = {}
        else:
            kw = dict(vmin=vmin, vmax=vmax)
        cmap_obj = plt.get_cmap(cm).with_extremes(bad="0.7")
        im = ax.imshow(img, origin="lower", cmap=cmap_obj, **kw)
        if mask is not None and (mask < 0.5).any() and (mask >= 0.5).any():
            ax.contour(mask, levels=[0.5], colors="w", linewidths=0.6)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label(units or "map units")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return maybe_save(fig, out)
