"""Summary statistics of maps: power spectrum, pixel PDF, Minkowski functionals, peaks.

Every function takes numpy arrays or torch tensors of shape (ny, nx) or (..., ny, nx) and answers
in kind (numpy in, numpy out), batched over leading dimensions.
"""

from .minkowski import MinkowskiFunctionals, gaussian_minkowski, minkowski_functionals
from .pdf import pixel_pdf
from .peaks import find_peaks, peak_counts, peak_mask, radial_profile, stacked_peaks
from .spectrum import power_spectrum

__all__ = [
    "MinkowskiFunctionals",
    "find_peaks",
    "gaussian_minkowski",
    "minkowski_functionals",
    "peak_counts",
    "peak_mask",
    "pixel_pdf",
    "power_spectrum",
    "radial_profile",
    "stacked_peaks",
]
