"""MCMC diagnostics figures through ArviZ (trace and rank plots)."""

from __future__ import annotations

from collections.abc import Sequence

from ._save import maybe_save

__all__ = ["trace", "rank"]


def _figure_of(axes):
    import numpy as np

    return np.asarray(axes).ravel()[0].figure


def trace(idata, var_names: Sequence[str] | None = None, out=None):
    """ArviZ trace plot (density and chain traces) of the chosen variables; returns the Figure."""
    import arviz as az

    from .corner import scalar_variables

    axes = az.plot_trace(idata, var_names=list(var_names or scalar_variables(idata)))
    return maybe_save(_figure_of(axes), out)


def rank(idata, var_names: Sequence[str] | None = None, out=None):
    """ArviZ rank plot (chain mixing: ranks should be uniform per chain); returns the Figure."""
    import arviz as az

    from .corner import scalar_variables

    axes = az.plot_rank(idata, var_names=list(var_names or scalar_variables(idata)))
    return maybe_save(_figure_of(axes), out)
