"""Trained priors on disk: finding, verifying and loading them as Pyro-ready objects.

A prior is a folder ``weights.safetensors`` + ``card.json``. Names resolve, in order, against
``$BAYESSKY_MODELS`` (``os.pathsep``-separated folders) and the priors shipped in the package
(:mod:`bayessky.priors.shipped`, built from the repository's top-level ``models/`` folder); a
path to a folder is used as it is. Loading checks the file kinds and the weights' sha256 against
the card and never unpickles; it imports no training code.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "load_prior": ".prior",
    "save_prior": ".prior",
    "resolve_prior": ".prior",
    "list_priors": ".prior",
    "FlowPrior": ".prior",
    "LatentVariablePrior": ".prior",
    "FLOW_KINDS": ".prior",
    "LATENT_KINDS": ".prior",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
