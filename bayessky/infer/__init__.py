"""Inference engines on Pyro models, all returning ``arviz.InferenceData``; calibration (SBC).

Engines: ``nuts``, ``hmc`` (Pyro MCMC; ``backend="fast"`` for batched chains), ``mclmc``
(microcanonical Langevin Monte Carlo, unadjusted or Metropolis-adjusted, batched chains), ``svi``
(autoguides incl. a normalizing flow), ``map`` (with optional Laplace), ``emcee`` (ensemble) and
``grid`` (exact grid posterior -> :class:`GridPosterior`); ``potential`` (a model's flat
unconstrained potential, for samplers of your own); ``summary`` for diagnostics;
``check_options`` (an engine's option checks without a model); ``sbc``
with ``plot_ranks`` / ``plot_coverage`` for calibration.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "nuts": ".mcmc",
    "hmc": ".mcmc",
    "mclmc": ".microcanonical",
    "svi": ".variational",
    "make_guide": ".variational",
    "map": ".optimize",
    "emcee": ".ensemble",
    "grid": ".grid_posterior",
    "GridPosterior": ".grid_posterior",
    "summary": ".diagnostics",
    "sbc": ".calibrate",
    "SBCResult": ".calibrate",
    "plot_ranks": ".calibrate",
    "plot_coverage": ".calibrate",
    "calibrate": ".calibrate",
    "check_options": ".options",
    "fast_nuts": ".fast_nuts",
    "potential": ".flat_potential",
    "Potential": ".flat_potential",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
