"""Pyro distributions: Gaussian random fields, flow distributions, latent-variable priors, likelihoods,
and the density transforms (log10, standardise) that map user units to a network's space."""

from .._lazy import lazy_exports

# name -> module (relative); add a line when you add a public class.
_EXPORTS = {
    "GaussianRandomField": ".grf",
    "MapNormal": ".likelihoods",
    "FlowDistribution": ".flow",
    "LatentPrior": ".latent",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
