"""Training: one loop for flows and VAEs, WGAN-GP for GANs, resumable training states.

Priors are written with :func:`bayessky.priors.checkpoint.save_checkpoint` and their cards built by
:mod:`bayessky.priors.card`; network kinds live in :mod:`bayessky.nn.registry`.
"""

from .._lazy import lazy_exports

# name -> module (relative). A name equal to its module's name exports the module itself.
_EXPORTS = {
    "fit": ".loop",
    "evaluate": ".loop",
    "TrainConfig": ".loop",
    "TrainResult": ".loop",
    "fit_wgan_gp": ".gan",
    "GANConfig": ".gan",
    "wasserstein_estimate": ".gan",
    "FlowNLL": ".losses",
    "NegativeELBO": ".losses",
    "bits_per_pixel": ".losses",
    "physical_nll": ".losses",
    "save_state": ".checkpoint",
    "load_state": ".checkpoint",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
