"""Physics: CMB spectra (shipped CAMB table), lensing, foreground scalings, synthetic families."""

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
    "hi_toy": ".hi_toy",
    "dust_toy": ".dust_toy",
    "blobs": ".blobs",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
