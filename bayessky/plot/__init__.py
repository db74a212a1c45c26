"""Figures: corner plots, MCMC diagnostics, posterior maps, spectra with bands, pixel histograms.

Every function returns a matplotlib Figure; pass ``out=PATH`` (or call :func:`savefig`) to write
it in one call.
"""

from ._save import savefig
from .corner import corner
from .diagnostics import rank, trace
from .maps import posterior_maps
from .spectra import pixel_histograms, power_spectrum_bands

__all__ = ["corner", "pixel_histograms", "posterior_maps", "power_spectrum_bands", "rank",
           "savefig", "trace"]
