r"""Instrument operators on flat periodic maps: beams, pixel windows, masks, apodisation, noise.

These are the deterministic (or seeded) pieces of the data model ``d = M B f + n``:

* ``B`` — a beam and pixel window, diagonal in Fourier space (:func:`gaussian_beam`,
  :func:`pixel_window`, :func:`convolve`, :func:`apply_beam`);
* ``M`` — a mask, 1 on observed pixels and 0 in holes (:func:`disc_mask`,
  :func:`point_source_mask`, :func:`strip_mask`), optionally tapered by :func:`apodize`;
* ``n`` — white or inhomogeneous pixel noise specified in uK-arcmin (:func:`white_noise_level`,
  :func:`white_noise`, :func:`inhomogeneous_noise`, :func:`noise_per_mode_spectrum`).

Fourier-space operators follow the convention of :mod:`bayessky.sky.geometry` (numpy's
unnormalised DFT on the grid of :class:`FlatGeometry`); all torch operations are batched over
leading dimensions, differentiable, and keep the device and dtype of their inputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from .._validate import as_count, as_tensor, check_finite, check_map, check_mask, check_positive, check_range
from .geometry import ARCMIN, FlatGeometry, _grid_shape, fft2, ifft2, irfft2, rfft2

__all__ = [
    "gaussian_beam",
    "pixel_window",
    "convolve",
    "apply_beam",
    "disc_mask",
    "point_source_mask",
    "strip_mask",
    "apodize",
    "white_noise_level",
    "white_noise_cl",
    "white_noise",
    "inhomogeneous_noise",
    "noise_per_mode_spectrum",
]

_FWHM_TO_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))


# -- beams and transfer functions --------------------------------------------------------------
def _sky(geometry: FlatGeometry, name: str = "geometry") -> FlatGeometry:
    if not isinstance(geometry, FlatGeometry):
        raise TypeError(f"{name}: expected a FlatGeometry, got {type(geometry).__name__}")
    return geometry


def gaussian_beam(
    geometry: FlatGeometry,
    fwhm_arcmin: float | torch.Tensor,
    rfft: bool = False,
    *,
    device=None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Transfer function of a circular Gaussian beam on the DFT grid.

    .. math:: B_\ell = \exp(-\ell^2 \sigma^2 / 2), \qquad \sigma = \mathrm{FWHM} / \sqrt{8 \ln 2}

    the exact Fourier transform of a flat-sky Gaussian kernel of unit integral (healpy's
    ``gauss_beam`` uses ell(ell+1) instead of ell^2, the curved-sky form).

    Arguments:
        geometry: a sky :class:`FlatGeometry` (arcmin/deg/rad pixels); for a box or ``"pixel"``
            geometry the FWHM is read in the geometry's own length unit (``fwhm_arcmin`` is then a
            misnomer kept for one signature).
        fwhm_arcmin: full width at half maximum in arcmin, a float or a tensor of shape
            ``batch`` (differentiable: beam widths can be inferred).
        rfft: return the half-plane grid, shape (ny, nx//2+1), for use with :func:`rfft2`.

    Returns:
        Tensor ``batch + (ny, nx)`` (or ``(ny, nx//2+1)``), dimensionless, B(0) = 1.

    Example:
        >>> g = FlatGeometry(64, 2.0)
        >>> b = gaussian_beam(g, 5.0)
        >>> float(b[0, 0]), b.shape
        (1.0, torch.Size([64, 64]))
    """
    geometry = _sky(geometry)
    if isinstance(fwhm_arcmin, torch.Tensor):
        device = device or fwhm_arcmin.device
        dtype = dtype or (fwhm_arcmin.dtype if fwhm_arcmin.is_floating_point() else None)
    dtype = dtype or torch.float64
    fwhm = as_tensor(fwhm_arcmin, "fwhm_arcmin", dtype=dtype, device=device)
    check_positive(fwhm, "fwhm_arcmin", strict=False)
    unit = ARCMIN if geometry.is_sky else 1.0
    sigma = (fwhm * unit * _FWHM_TO_SIGMA)[..., None, None]
    k = geometry.k_grid(rfft, device=device, dtype=dtype)
    return torch.exp(-0.5 * (k * sigma) ** 2)


def pixel_window(
    geometry: FlatGeometry, rfft: bool = False, *, device=None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    r"""Transfer function of square top-hat pixels: the product of one sinc per axis.

    .. math:: W(k_x, k_y) = \mathrm{sinc}(k_x \Delta / 2)\, \mathrm{sinc}(k_y \Delta / 2),
              \qquad \mathrm{sinc}(u) = \sin u / u

    with Delta the pixel side (in rad for the sky). Multiply a band-limited field's Fourier
    modes by W to get the pixel-averaged map; a spectrum picks up W^2.

    Returns:
        Tensor (ny, nx) or (ny, nx//2+1) with W(0) = 1.
    """
    geometry = _sky(geometry)
    ky, kx = geometry.k_vectors(rfft, device=device, dtype=dtype)
    # torch.sinc is the normalised sin(pi x)/(pi x), hence the 2 pi.
    half = geometry.dx / (2 * math.pi)
    return torch.sinc(kx * half) * torch.sinc(ky * half)


def convolve(maps: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    r"""Apply a Fourier-diagonal operator: ``ifft2(fft2(maps) * transfer)``, periodic boundaries.

    Arguments:
        maps: (..., ny, nx) real maps (tensor or array).
        transfer: the operator on the DFT grid, either the full grid (..., ny, nx) (real or
            complex) or the half plane (..., ny, nx//2+1) of :func:`rfft2` (real, Hermitian by
            construction). Leading dimensions broadcast against those of ``maps``.

    Returns:
        Real tensor of the broadcast shape, dtype and device of ``maps``. Differentiable in both.
    """
    maps = check_map(maps, "maps")
    if not maps.is_floating_point():
        maps = maps.to(torch.get_default_dtype())
    if not isinstance(transfer, torch.Tensor):
        try:
            transfer = torch.as_tensor(np.asarray(transfer))
        except (TypeError, ValueError) as err:
            raise TypeError(f"transfer: expected an array or tensor, got {type(transfer).__name__}") from err
    if not (transfer.is_floating_point() or transfer.is_complex()):
        if transfer.dtype not in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
            raise TypeError(f"transfer: expected a numeric array, got dtype {transfer.dtype}")
    transfer = transfer.to(maps.device)
    if not transfer.is_complex():
        transfer = transfer.to(maps.dtype)
    ny, nx = maps.shape[-2:]
    if transfer.ndim < 2:
        raise ValueError(f"transfer: expected at least 2 dimensions, got shape {tuple(transfer.shape)}")
    # A NaN/inf mode spreads to every pixel of the output through the inverse FFT.
    check_finite(torch.view_as_real(transfer) if transfer.is_complex() else transfer, "transfer")
    try:
        torch.broadcast_shapes(maps.shape[:-2], transfer.shape[:-2])
    except RuntimeError:
        raise ValueError(f"transfer: batch shape {tuple(transfer.shape[:-2])} does not broadcast with "
                         f"maps' {tuple(maps.shape[:-2])}") from None
    if transfer.shape[-2:] == (ny, nx):
        out = ifft2(fft2(maps) * transfer)
        # A real transfer on the full grid may still be non-Hermitian; the real part is the
        # operator's action on real maps projected back to real maps.
        return out.real.to(maps.dtype)
    if transfer.shape[-2:] == (ny, nx // 2 + 1):
        if transfer.is_complex():
            raise ValueError("transfer: a half-plane (rfft) transfer must be real")
        return irfft2(rfft2(maps) * transfer, (ny, nx))
    raise ValueError(
        f"transfer: expected trailing shape {(ny, nx)} or {(ny, nx // 2 + 1)}, got {tuple(transfer.shape)}"
    )


def apply_beam(maps: torch.Tensor, geometry: FlatGeometry, fwhm_arcmin: float | torch.Tensor) -> torch.Tensor:
    """Smooth maps (..., ny, nx) with a Gaussian beam of FWHM in arcmin; see :func:`gaussian_beam`."""
    geometry = _sky(geometry)
    maps = check_map(maps, "maps", shape=geometry.shape)
    dtype = maps.dtype if maps.is_floating_point() else torch.get_default_dtype()
    b = gaussian_beam(geometry, fwhm_arcmin, rfft=True, device=maps.device, dtype=dtype)
    return convolve(maps.to(dtype), b)


# -- masks -------------------------------------------------------------------------------------------
def _shape_of(grid) -> tuple[int, int]:
    if isinstance(grid, FlatGeometry):
        return grid.shape
    return _grid_shape(grid, "grid", min_side=1)


def _pixels(value, grid, unit: str, name: str) -> np.ndarray:
    """Convert a length to pixels; ``unit`` is ``"pixel"`` or the geometry's own unit."""
    try:
        value = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}") from err
    if unit == "pixel":
        return value
    if not isinstance(grid, FlatGeometry):
        raise ValueError(f"{name}: unit {unit!r} needs a FlatGeometry, not a bare shape")
    if unit != grid.unit:
        raise ValueError(f"{name}: unit must be 'pixel' or the geometry's unit {grid.unit!r}, got {unit!r}")
    return value / grid.pixel_size


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def disc_mask(
    grid,
    centres,
    radii,
    *,
    periodic: bool = True,
    device=None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Mask with circular holes: 0 on pixels whose centre lies within ``radius`` of a disc centre.

    Arguments:
        grid: a :class:`FlatGeometry`, an int or ``(ny, nx)``.
        centres: (n, 2) disc centres as (row, column) in pixels (fractional allowed).
        radii: (n,) or a scalar, in pixels.
        periodic: measure distances on the torus (holes wrap around edges, as on periodic maps).

    Returns:
        Tensor (ny, nx) of 0/1, 1 = observed.
    """
    ny, nx = _shape_of(grid)
    try:
        centres = np.asarray(centres, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"centres: expected an (n, 2) array of (row, col), got {type(centres).__name__}") \
            from err
    if centres.ndim not in (1, 2) or centres.shape[-1] != 2:
        raise ValueError(f"centres: expected (n, 2) (row, col) pairs or one pair, got shape {centres.shape}")
    centres = centres.reshape(-1, 2)
    check_finite(torch.as_tensor(centres), "centres")
    try:
        radii = np.broadcast_to(np.asarray(radii, dtype=float), (len(centres),)).copy()
    except (TypeError, ValueError):
        raise ValueError(f"radii: expected a scalar or {len(centres)} values (one per centre), got "
                         f"shape {np.shape(radii)}") from None
    check_positive(radii, "radii", strict=False)
    keep = np.ones((ny, nx), dtype=bool)
    for (cy, cx), r in zip(centres, radii):
        keep.flat[_disc_pixels((ny, nx), cy, cx, r, periodic)] = False
    return torch.as_tensor(keep, device=device, dtype=dtype or torch.get_default_dtype())


def _disc_pixels(shape, cy, cx, r, periodic):
    """Flat indices of pixels whose centre lies within r of (cy, cx): work ~ r^2, not the map size.

    A radius beyond the map is clipped (a hole that large simply masks everything it can reach,
    which is what the caller asked for) so the work never exceeds a few map sizes.
    """
    ny, nx = shape
    if periodic:
        # every pixel of the torus lies within hypot(ny, nx) / 2 of any point, so this is exact
        r = min(r, math.hypot(ny, nx))
        i = np.arange(math.floor(cy - r), math.ceil(cy + r) + 1)
        j = np.arange(math.floor(cx - r), math.ceil(cx + r) + 1)
    else:
        i = np.arange(max(math.floor(cy - r), 0), min(math.ceil(cy + r), ny - 1) + 1)
        j = np.arange(max(math.floor(cx - r), 0), min(math.ceil(cx + r), nx - 1) + 1)
    # Unwrapped offsets: any periodic image within r counts, as with minimum-image distances.
    ii, jj = np.nonzero((i[:, None] - cy) ** 2 + (j[None, :] - cx) ** 2 <= r * r)
    return np.unique((i[ii] % ny) * nx + j[jj] % nx)


def point_source_mask(
    grid,
    n_sources: int | None = None,
    *,
    fraction: float | None = None,
    radius: tuple[float, float] | float = (2.0, 5.0),
    unit: str = "pixel",
    seed: int | np.random.Generator | None = 0,
    periodic: bool = True,
    device=None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Point-source style mask: discs at uniform random centres with radii uniform in a range.

    Give either ``n_sources`` (exactly that many holes) or ``fraction`` (holes are added one at a
    time until at least that fraction of pixels is masked; the dust-toy-v1 family of
    :mod:`bayessky.families.dust_toy` uses radius 2-5 px and about 10 %).

    Arguments:
        grid: a :class:`FlatGeometry`, an int or ``(ny, nx)``.
        radius: ``(r_min, r_max)`` or one radius, in pixels (``unit="pixel"``) or in the
            geometry's unit, e.g. ``unit="arcmin"`` for a sky geometry.
        seed: int or ``numpy.random.Generator``; the same seed gives the same mask on any device.

    Returns:
        Tensor (ny, nx) of 0/1, 1 = observed.
    """
    if (n_sources is None) == (fraction is None):
        raise ValueError("n_sources: give exactly one of n_sources or fraction")
    ny, nx = _shape_of(grid)
    r = _pixels(radius, grid, unit, "radius").reshape(-1)
    if r.size == 1:
        r = np.array([r[0], r[0]])
    if r.size != 2 or r[0] > r[1]:
        raise ValueError(f"radius: expected one radius or (r_min <= r_max), got {radius!r}")
    check_positive(r, "radius")
    rng = _rng(seed)

    def draw(k):
        return (rng.uniform(0, [ny, nx], size=(k, 2)), rng.uniform(r[0], r[1], size=k))

    if n_sources is not None:
        n_sources = as_count(n_sources, "n_sources")  # 2.5 would silently become 2
        # more holes than pixels is never a mask anyone means (and 10**12 would exhaust memory)
        if not 0 <= n_sources <= ny * nx:
            raise ValueError(f"n_sources: expected between 0 and {ny * nx} (the pixel count), got "
                             f"{n_sources}; use fraction= to mask a share of the map")
        c, rad = draw(n_sources)
        return disc_mask((ny, nx), c, rad, periodic=periodic, device=device, dtype=dtype)
    check_range(fraction, "fraction", 0.0, 0.95)
    keep = np.ones((ny, nx), dtype=bool)
    masked = 0
    while masked < fraction * ny * nx:
        (c,), (rad,) = draw(1)
        idx = _disc_pixels((ny, nx), c[0], c[1], rad, periodic)
        masked += int(keep.flat[idx].sum())
        keep.flat[idx] = False
    return torch.as_tensor(keep, device=device, dtype=dtype or torch.get_default_dtype())


def strip_mask(
    grid,
    width: float,
    orientation: str = "vertical",
    position: int | None = None,
    *,
    seed: int | np.random.Generator | None = 0,
    unit: str = "pixel",
    device=None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A straight masked strip across the map (e.g. a scan gap or the Galactic plane).

    Arguments:
        grid: a :class:`FlatGeometry`, an int or ``(ny, nx)``.
        width: strip width, rounded to whole pixels (``unit`` as in :func:`point_source_mask`).
        orientation: ``"vertical"`` (masks whole columns) or ``"horizontal"`` (whole rows).
        position: index of the first masked column/row; drawn uniformly from ``seed`` if None.
            The strip wraps around the edge (periodic maps).

    Returns:
        Tensor (ny, nx) of 0/1, 1 = observed.
    """
    ny, nx = _shape_of(grid)
    if orientation not in ("vertical", "horizontal"):
        raise ValueError(f"orientation: expected 'vertical' or 'horizontal', got {orientation!r}")
    n = nx if orientation == "vertical" else ny
    w_pix = _pixels(width, grid, unit, "width")
    if w_pix.ndim != 0 or not math.isfinite(float(w_pix)):
        raise ValueError(f"width: expected a finite number, got {width!r}")
    w = int(round(float(w_pix)))
    if not 1 <= w <= n:
        raise ValueError(f"width: expected between 1 and {n} pixels, got {width!r}")
    position = int(_rng(seed).integers(0, n)) if position is None else as_count(position, "position")
    idx = (position + np.arange(w)) % n
    keep = np.ones((ny, nx), dtype=bool)
    if orientation == "vertical":
        keep[:, idx] = False
    else:
        keep[idx, :] = False
    return torch.as_tensor(keep, device=device, dtype=dtype or torch.get_default_dtype())


def _taper(x: np.ndarray, kind: str) -> np.ndarray:
    # x = distance / radius in [0, 1]; NaMaster's C1 and C2 tapers (Grain et al. 2009 style).
    if kind in ("cosine", "c2"):
        return 0.5 * (1.0 - np.cos(np.pi * x))
    if kind == "c1":
        return x - np.sin(2 * np.pi * x) / (2 * np.pi)
    raise ValueError(f"kind: expected 'cosine' (= 'C2') or 'C1', got {kind!r}")


def apodize(mask, radius_pixels: float, kind: str = "cosine", *, periodic: bool = True) -> torch.Tensor:
    r"""Taper a binary mask smoothly to zero at the edges of its holes.

    For each observed pixel let ``r`` be the Euclidean distance (pixel centres, in pixels) to
    the nearest masked pixel and ``x = min(r / radius, 1)``; the apodised mask is

    * ``kind="cosine"`` (= ``"C2"``): ``w = (1 - cos(pi x)) / 2``
    * ``kind="C1"``: ``w = x - sin(2 pi x) / (2 pi)``

    the flat-sky forms of NaMaster's C2/C1 apodisations. Masked pixels stay 0, so the taper
    eats into the observed region (the holes do not shrink).

    Arguments:
        mask: (..., ny, nx) with values in [0, 1]; values > 0.5 count as observed.
        radius_pixels: taper length in pixels.
        periodic: distances wrap around the edges (periodic maps).

    Returns:
        Tensor with the shape, dtype and device of ``mask``; values in [0, 1].
    """
    # the docstring promises [0, 1]: a 5.0 or -3 mask is a weight map or a sign error, not a mask
    m = check_mask(mask, "mask")
    check_positive(radius_pixels, "radius_pixels")
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected 'cosine' (= 'C2') or 'C1', got {type(kind).__name__} {kind!r}")
    kind = kind.lower()
    _taper(np.zeros(1), kind)  # validate kind early
    dtype = m.dtype if m.is_floating_point() else torch.get_default_dtype()
    binary = (m > 0.5).detach().cpu().numpy()
    out = np.empty(binary.shape, dtype=float)
    pad = int(math.ceil(radius_pixels)) + 1
    for idx in np.ndindex(binary.shape[:-2]):
        b = binary[idx]
        if b.all():
            out[idx] = 1.0
            continue
        if periodic:
            # Distances up to `radius` only need a halo of that width from the wrapped copy.
            pw = (min(pad, b.shape[0]), min(pad, b.shape[1]))
            bp = np.pad(b, ((pw[0], pw[0]), (pw[1], pw[1])), mode="wrap")
            d = ndimage.distance_transform_edt(bp)[pw[0]:pw[0] + b.shape[0], pw[1]:pw[1] + b.shape[1]]
        else:
            d = ndimage.distance_transform_edt(b)
        out[idx] = _taper(np.clip(d / radius_pixels, 0.0, 1.0), kind)
    return torch.as_tensor(out, dtype=dtype, device=m.device)


# -- noise ---------------------------------------------------------------------------------------------
def white_noise_level(uK_arcmin: float | torch.Tensor, geometry: FlatGeometry):
    r"""Per-pixel noise standard deviation (uK) for a white-noise depth in uK-arcmin.

    .. math:: \sigma_\mathrm{pix} = \Delta_T / \theta_\mathrm{pix}

    with Delta_T in uK-arcmin and theta_pix the pixel side in arcmin (a 1 uK-arcmin map has
    1 uK rms in 1 arcmin^2 pixels). Works on floats and tensors (differentiable).
    """
    geometry = _sky(geometry)
    if not geometry.is_sky:
        raise ValueError(f"geometry: uK-arcmin needs a sky geometry, got unit {geometry.unit!r}")
    check_positive(uK_arcmin, "uK_arcmin", strict=False)
    return uK_arcmin / (geometry.dx / ARCMIN)


def white_noise_cl(uK_arcmin: float | torch.Tensor):
    r"""Flat white-noise angular spectrum N_ell = (Delta_T * arcmin)^2, in uK^2 sr."""
    check_positive(uK_arcmin, "uK_arcmin", strict=False)
    return (uK_arcmin * ARCMIN) ** 2


def noise_per_mode_spectrum(
    sigma: float | torch.Tensor, geometry: FlatGeometry, rfft: bool = False, *, device=None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Per-mode spectrum of white noise of per-pixel std ``sigma``: S(k) = sigma^2 on every mode.

    In the convention of :mod:`bayessky.sky.geometry` (E|fft2(n)_k|^2 = N_pix S(k)), white noise
    has a flat S equal to the pixel variance; it equals ``N_ell / pixel_area`` with
    :func:`white_noise_cl`. ``sigma`` may be a tensor of shape ``batch``; the result is
    ``batch + grid``.
    """
    geometry = _sky(geometry)
    if isinstance(sigma, torch.Tensor):
        device = device or sigma.device
        dtype = dtype or (sigma.dtype if sigma.is_floating_point() else None)
    dtype = dtype or torch.float64
    s = as_tensor(sigma, "sigma", dtype=dtype, device=device)
    check_positive(s, "sigma", strict=False)
    ones = torch.ones_like(geometry.k_grid(rfft, device=device, dtype=dtype))
    return (s * s)[..., None, None] * ones


def white_noise(
    shape, sigma: float | torch.Tensor = 1.0, generator: torch.Generator | None = None, *,
    device=None, dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Gaussian white noise of per-pixel std ``sigma`` (map units) and shape ``shape``.

    ``sigma`` may be a tensor broadcastable to ``shape`` (its device/dtype are used). Pass a
    ``torch.Generator`` on the target device for reproducible draws.
    """
    if isinstance(sigma, torch.Tensor):
        device = device or sigma.device
        dtype = dtype or (sigma.dtype if sigma.is_floating_point() else None)
    if generator is not None:
        device = device or generator.device
    dtype = dtype or torch.get_default_dtype()
    check_positive(sigma, "sigma", strict=False)
    # an int is refused rather than guessed: 8 could mean (8,) (torch) or an 8 x 8 map
    if isinstance(shape, (str, bytes)) or np.ndim(shape) != 1:
        raise TypeError(f"shape: expected a tuple of ints such as (ny, nx), got {type(shape).__name__} "
                        f"{shape!r}")
    shape = tuple(as_count(v, "shape") for v in shape)
    if min(shape, default=0) < 0:
        raise ValueError(f"shape: sizes must be >= 0, got {shape}")
    if isinstance(sigma, torch.Tensor):
        try:
            torch.broadcast_shapes(shape, sigma.shape)
        except RuntimeError:
            raise ValueError(f"sigma: shape {tuple(sigma.shape)} does not broadcast to shape {shape}") \
                from None
    z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    return z * sigma


def inhomogeneous_noise(sigma_map, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise with a per-pixel std map (..., ny, nx): ``sigma_map * N(0, 1)``.

    Use :func:`white_noise_level` on a hits-weighted depth map (uK-arcmin) to build ``sigma_map``.
    """
    s = check_map(sigma_map, "sigma_map")
    check_positive(s, "sigma_map", strict=False)
    if not s.is_floating_point():
        s = s.to(torch.get_default_dtype())
    z = torch.randn(s.shape, generator=generator, device=s.device, dtype=s.dtype)
    return z * s
