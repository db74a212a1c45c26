"""Posterior summary table with convergence diagnostics (ArviZ ``summary``)."""

from __future__ import annotations

from ._compat import _az

__all__ = ["summary"]

_COLUMNS = ("mean", "sd", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")


def summary(idata, var_names=None, **kwargs):
    """``az.summary`` reduced to mean, sd, mcse_mean, mcse_sd, ess_bulk, ess_tail and r_hat.

    Arguments:
        idata: InferenceData from any bayessky engine.
        var_names: variables to summarise (default: all posterior variables).
        **kwargs: passed to ``az.summary``.

    Returns:
        pandas.DataFrame, one row per scalar parameter (vector sites are flattened, ``x[i, j]``).
        R-hat needs >= 2 chains (NaN otherwise); MCSE and ESS follow Vehtari et al. (2021),
        "Rank-normalization, folding, and localization: an improved R-hat", arXiv:1903.08008.
    """
    az = _az()
    df = az.summary(idata, var_names=var_names, kind="all", **kwargs)
    cols = [c for c in _COLUMNS if c in df.columns]
    return df[cols]
