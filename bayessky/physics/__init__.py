"""Physics: CMB spectra (shipped CAMB table), lensing, foreground frequency scalings.

The synthetic families moved to :mod:`bayessky.families`; ``bayessky.physics.hi_toy``,
``dust_toy`` and ``blobs`` stay as aliases of them (resolved on first use, by name, so this
layer imports nothing above it).
"""

import importlib

from .._lazy import lazy_exports

# name -> module (relative). A name equal to its module's name exports the module itself.
_EXPORTS = {
    "cmb_spectra": ".spectra",
    "load_spectra": ".spectra",
    "lens": ".lensing",
    "deflection": ".lensing",
    "modified_blackbody": ".foregrounds",
    "tsz_spectral_function": ".foregrounds",
    "CMBSpectra": ".spectra", "remap": ".lensing", "planck_intensity": ".foregrounds",
    "dB_dT": ".foregrounds", "cmb_to_rj": ".foregrounds", "cmb_to_mjysr": ".foregrounds",
    "rj_to_mjysr": ".foregrounds",
}
_FAMILY_ALIASES = ("hi_toy", "dust_toy", "blobs")  # old names, kept for user code
__all__ = sorted(_EXPORTS)
_physics_getattr = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str):
    if name in _FAMILY_ALIASES:
        return importlib.import_module(f"bayessky.families.{name}")
    return _physics_getattr(name)
