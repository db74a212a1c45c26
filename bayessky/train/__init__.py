"""Training: one loop for flows and VAEs, WGAN-GP for GANs, safe checkpoints and model cards."""

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
    "save_checkpoint": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "read_card": ".checkpoint",
    "save_state": ".checkpoint",
    "load_state": ".checkpoint",
    "Checkpoint": ".checkpoint",
    "make_card": ".card",
    "validate_card": ".card",
    "build_network": ".registry",
    "register_network": ".registry",
    "NETWORKS": ".registry",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
