"""Pyro distributions: Gaussian random fields, flow priors, decoder/generator priors, likelihoods."""

from .._lazy import lazy_exports

# name -> module (relative); add a line when you add a public class.
_EXPORTS = {
    "GaussianRandomField": ".grf",
    "MapNormal": ".likelihoods",
    "FlowDistribution": ".flow",
    "LatentPrior": ".latent",
    "load_prior": ".priors",
    "save_prior": ".priors",
    "FlowPrior": ".priors",
    "LatentVariablePrior": ".priors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
