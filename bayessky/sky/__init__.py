"""Sky geometry and deterministic map operations: grids, FFTs, spectra, beams, masks, HEALPix."""

from .._lazy import lazy_exports
from .geometry import ARCMIN, DEGREE, FlatGeometry, fft2, hartley2, ifft2, irfft2, rfft2, rfft_weights

# Operators pull in scipy.ndimage and the HEALPix bridge pulls in healpy: load them on first use.
_EXPORTS = {
    "gaussian_beam": ".operators",
    "pixel_window": ".operators",
    "convolve": ".operators",
    "apply_beam": ".operators",
    "disc_mask": ".operators",
    "point_source_mask": ".operators",
    "strip_mask": ".operators",
    "apodize": ".operators",
    "white_noise_level": ".operators",
    "white_noise_cl": ".operators",
    "white_noise": ".operators",
    "inhomogeneous_noise": ".operators",
    "noise_per_mode_spectrum": ".operators",
    "PatchProjection": ".healpix",
    "cut_patch": ".healpix",
    "paste_patch": ".healpix",
    "anafast": ".healpix",
    "synfast": ".healpix",
    "synalm": ".healpix",
}

__all__ = ["ARCMIN", "DEGREE", "FlatGeometry", "fft2", "hartley2", "ifft2", "irfft2", "rfft2",
           "rfft_weights", *sorted(_EXPORTS)]
__getattr__ = lazy_exports(__name__, _EXPORTS)
