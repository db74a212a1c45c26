"""Data: loaders (CAMELS, npy/npz/FITS, HEALPix), augmentation (the density transforms are in
:mod:`bayessky.distributions.transforms`)."""

from .._lazy import lazy_exports

# name -> module (relative). A name equal to its module's name exports the module itself.
_EXPORTS = {
    "load_maps": ".io",
    "load_healpix": ".io",
    "check_map_array": ".io",
    "load_camels": ".camels",
    "load_params": ".camels",
    "split_by_simulation": ".camels",
    "cut_maps": ".camels",
    "downsample_maps": ".camels",
    "CamelsData": ".camels",
    "CAMELS_PARAM_NAMES": ".camels",
    "CAMELS_LH_RANGES": ".camels",
    "TrainingData": ".camels",
    "load_training_data": ".camels",
    "Augment": ".augment",
    "random_flip": ".augment",
    "random_rot90": ".augment",
    "random_shift": ".augment",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
