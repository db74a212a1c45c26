"""Sky geometry and deterministic map operations: grids, FFTs, spectra, beams, masks, HEALPix."""

from .geometry import ARCMIN, DEGREE, FlatGeometry, fft2, ifft2, irfft2, rfft2

__all__ = ["ARCMIN", "DEGREE", "FlatGeometry", "fft2", "ifft2", "irfft2", "rfft2"]
