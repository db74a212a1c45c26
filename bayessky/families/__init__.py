"""Synthetic data families with exact likelihoods: what tests, benchmarks and shipped priors use.

- :mod:`~bayessky.families.hi_toy` (``hi-toy-v1``): log-normal HI-like maps of (Omega_m, sigma_8)
  with an exact likelihood, so a learned posterior can be compared with the exact one.
- :mod:`~bayessky.families.dust_toy` (``dust-toy-v1``): log-normal dust intensity with a red
  spectrum, masks and the observation model ``d = M (I + n)``.
- :mod:`~bayessky.families.blobs`: Gaussian-blob images (point-source-like fields).

Each module's docstring is its specification; the formulas are implemented exactly.
"""

from .._lazy import lazy_exports

_EXPORTS = {"hi_toy": ".hi_toy", "dust_toy": ".dust_toy", "blobs": ".blobs"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
