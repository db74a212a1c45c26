"""bayessky: field-level Bayesian inference on cosmological maps with deep generative priors.

Data flow: ``sky`` (geometry) -> ``physics`` (spectra, lensing, synthetic families) -> ``nn``
(trainable networks) -> ``distributions`` (Pyro distributions) -> ``models`` (forward models)
-> ``infer`` (engines, ArviZ) -> ``plot``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_prior"]


def load_prior(name_or_path, *, device=None, dtype=None):
    """Load a shipped or user prior (``models/<name>`` or a folder with weights + card).

    See :func:`bayessky.distributions.priors.load_prior`.
    """
    from .distributions.priors import load_prior as _load

    return _load(name_or_path, device=device, dtype=dtype)
