"""Corner plots of global parameters through the ``corner`` package, with truths and a reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._save import maybe_save

__all__ = ["LABELS", "corner", "label", "scalar_variables"]

#: how a parameter's name is typeset on axes (matplotlib mathtext, no TeX install needed)
LABELS: dict[str, str] = {
    "Omega_m": r"$\Omega_{\rm m}$", "Omega_b": r"$\Omega_{\rm b}$", "sigma_8": r"$\sigma_8$",
    "S_8": r"$S_8$", "h": r"$h$", "n_s": r"$n_{\rm s}$", "A_s": r"$A_{\rm s}$",
    "A_SN1": r"$A_{\rm SN1}$", "A_SN2": r"$A_{\rm SN2}$", "A_AGN1": r"$A_{\rm AGN1}$",
    "A_AGN2": r"$A_{\rm AGN2}$", "A_d": r"$A_{\rm d}$", "beta_d": r"$\beta_{\rm d}$", "T_d": r"$T_{\rm d}$",
    "tau": r"$\tau$", "r": r"$r$",
}


def label(name: str) -> str:
    """The axis label of parameter ``name``: :data:`LABELS`, else the name itself."""
    return LABELS.get(name, name)


def scalar_variables(idata, group: str = "posterior") -> list[str]:
    """Names of variables with no dimensions beyond (chain, draw): the ones a corner plot shows."""
    ds = getattr(idata, group)
    return [v for v in ds.data_vars if ds[v].ndim == 2]


def _samples(idata, var_names: Sequence[str], name: str = "idata") -> np.ndarray:
    post = idata.posterior
    for v in var_names:
        if v in post and post[v].ndim != 2:
            # flattening a map-shaped variable would pool all its pixels into one histogram
            raise ValueError(f"var_names: {v!r} has shape {tuple(post[v].shape[2:])} per draw; a corner "
                             f"plot shows scalar variables only ({scalar_variables(idata) or 'none here'})")
    x = np.stack([np.asarray(post[v]).reshape(-1) for v in var_names], axis=-1)
    bad = ~np.isfinite(x)
    if bad.any():
        v = var_names[int(np.argmax(bad.any(0)))]
        raise ValueError(f"{name}: posterior draws of {v!r} contain {int(bad.sum(0).max())} NaN/inf values")
    return x


def corner(
    idata,
    var_names: Sequence[str] | None = None,
    truths: Mapping[str, float] | Sequence[float] | None = None,
    reference=None,
    levels: Sequence[float] = (0.68, 0.95),
    labels: Sequence[str] | None = None,
    reference_label: str | Sequence[str] = "reference",
    label: str = "posterior",
    out=None,
    **kwargs,
):
    """Corner plot of the scalar posterior variables of ``idata``.

    Arguments:
        idata: ``arviz.InferenceData`` with a posterior group.
        var_names: variables to show (default: every scalar variable).
        truths: true values, as a mapping name -> value or a sequence in ``var_names`` order.
        reference: optional InferenceData (e.g. the exact posterior), or a list of them, drawn in
            other colours on the same axes, so the posterior can be judged against them.
        levels: probability mass enclosed by the 2-D contours (68 % and 95 % by default).
        labels: axis labels in ``var_names`` order (default: :func:`label` of each name).
        label, reference_label: legend entries of the posterior and the reference(s) (a list for
            several references).
        out: optional path; the figure is written there.

    A legend names every set of lines drawn: the posterior, the reference and the truths.

    Returns:
        matplotlib Figure.
    """
    import corner as _corner
    from matplotlib.lines import Line2D

    names = list(var_names) if var_names is not None else scalar_variables(idata)
    if not names:
        raise ValueError("var_names: the posterior has no scalar variables to plot")
    missing = [v for v in names if v not in idata.posterior]
    if missing:
        raise ValueError(f"var_names: not in the posterior: {missing}")
    if isinstance(truths, Mapping):
        truth_list = [truths.get(v) for v in names]
    else:
        truth_list = list(truths) if truths is not None else None
    x = _samples(idata, names)
    refs = ([] if reference is None else list(reference) if isinstance(reference, (list, tuple))
            else [reference])
    ref_labels = [reference_label] if isinstance(reference_label, str) else list(reference_label)
    ref_labels = ref_labels if refs else []
    if len(ref_labels) != len(refs):
        raise ValueError(f"reference_label: {len(ref_labels)} label(s) for {len(refs)} reference(s)")
    ref_x = [_samples(r, names, "reference") for r in refs]
    both = np.concatenate([x, *ref_x])
    lo, hi = both.min(0), both.max(0)
    pad = 0.05 * (hi - lo)
    # A point estimate (MAP: one draw) or a constant variable has no spread, which corner refuses;
    # give such axes a width of 10 % of the value (or 0.1) so the point is still drawn.
    flat = hi - lo <= 1e-12 * np.maximum(1.0, np.abs(hi))
    pad = np.where(flat, 0.05 * np.maximum(np.abs(hi), 1.0), pad)
    ranges = list(zip(lo - pad, hi + pad)) if refs or flat.any() else None
    style_extra = {}
    if len(x) < 2:  # no contours nor smoothing from one draw; corner wants >= as many rows as axes
        style_extra = dict(plot_contours=False, plot_density=False, plot_datapoints=True, smooth=None)
        x = np.repeat(x, max(2, x.shape[1]), axis=0)
    style = dict(levels=tuple(levels), plot_datapoints=False, fill_contours=False,
                 smooth=1.0, show_titles=True, title_fmt=".3f")
    style.update(style_extra)
    style.update(kwargs)
    # equal total weight per sample set, so histograms of different sizes share one y scale
    axis_labels = list(labels) if labels else [LABELS.get(v, v) for v in names]  # `label` is an argument
    fig = _corner.corner(x, labels=axis_labels, truths=truth_list, range=ranges,
                         weights=np.full(len(x), 1.0 / len(x)), color="C0", truth_color="k", **style)
    ref_style = {k: v for k, v in style.items() if k not in ("show_titles", "title_fmt")}
    ref_style.setdefault("plot_density", False)
    for k, xr in enumerate(ref_x):
        _corner.corner(xr, fig=fig, range=ranges, color=f"C{k + 1}",
                       weights=np.full(len(xr), 1.0 / len(xr)), **ref_style)
    if refs:
        n = len(names)
        for i in range(n):  # the second call rescales the diagonal to its own maximum
            ax = fig.axes[i * n + i]
            top = max((float(np.max(line.get_ydata())) for line in ax.get_lines()
                       if len(line.get_ydata()) > 2), default=None)
            if top:
                ax.set_ylim(0, 1.1 * top)
    handles = [Line2D([], [], color="C0", label=label)]
    handles += [Line2D([], [], color=f"C{k + 1}", label=lab) for k, lab in enumerate(ref_labels)]
    if truth_list is not None and any(t is not None for t in truth_list):
        handles.append(Line2D([], [], color="k", label="truth"))
    if len(handles) > 1:
        fig.legend(handles=handles, loc="upper right", frameon=False)
    return maybe_save(fig, out)
