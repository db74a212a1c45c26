"""bayessky: field-level Bayesian inference on cosmological maps with deep generative priors.

Data flow (a package imports only those before it): ``sky`` (geometry, map operators) ->
``physics`` (spectra, lensing, foregrounds) -> ``data`` (loaders) and ``stats`` (summary
statistics) -> ``nn`` (networks) -> ``distributions`` (Pyro distributions) -> ``priors``
(trained priors on disk) -> ``families`` (synthetic data with exact likelihoods) -> ``models``
(forward models) -> ``infer`` (engines, ArviZ) -> ``train`` -> ``plot`` -> ``cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_prior"]


def load_prior(name_or_path, *, device=None, dtype=None):
    """Load a shipped or user prior by name or folder (weights.safetensors + card.json).

    See :func:`bayessky.priors.load_prior`.
    """
    from .priors import load_prior as _load

    return _load(name_or_path, device=device, dtype=dtype)
