"""MCMC diagnostics figures through ArviZ (trace and rank plots)."""

from __future__ import annotations

from collections.abc import Sequence

from ._save import maybe_save

__all__ = ["trace", "rank"]


def _figure_of(axes):
    import numpy as np

    return np.asarray(axes).ravel()[0].figure


def _labeller(names):
    """ArviZ titles in the corner plot's typesetting (:data:`bayessky.plot.corner.LABELS`)."""
    from arviz.labels import MapLabeller

    from .corner import label

    return MapLabeller(var_name_map={v: label(v) for v in names})


def trace(idata, var_names: Sequence[str] | None = None, out=None):
    """ArviZ trace plot (density and chain traces) of the chosen variables; returns the Figure."""
    import arviz as az

    from .corner import scalar_variables

    names = list(var_names or scalar_variables(idata))
    axes = az.plot_trace(idata, var_names=names, labeller=_labeller(names))
    return maybe_save(_figure_of(axes), out)


def rank(idata, var_names: Sequence[str] | None = None, out=None):
    """ArviZ rank plot (chain mixing: ranks should be uniform per chain); returns the Figure."""
    import arviz as az

    from .corner import scalar_variables

    names = list(var_names or scalar_variables(idata))
    axes = az.plot_rank(idata, var_names=names, labeller=_labeller(names))
    return maybe_save(_figure_of(axes), out)
