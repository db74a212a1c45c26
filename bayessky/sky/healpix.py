r"""HEALPix bridge (healpy): cut flat patches from the sphere, paste them back, C_ell in and out.

A patch is a ``ny x nx`` grid of square pixels of side ``pixel_size_arcmin`` centred on
``centre = (lon, lat)`` in degrees, under one of two projections:

* ``"gnomonic"``: the tangent plane at the centre; plane coordinates (x, y) in radians map to the
  direction ``normalise(r0 + x e_lon + y e_lat)``. Great circles through the centre are straight,
  and the distortion at angular distance theta is 1/cos^2(theta) radially (1 % at 5.7 deg).
* ``"car"``: plate carree in the map's own coordinates: ``lon = lon0 + x``, ``lat = lat0 + y``.
  Rows are parallels; the physical width of a column shrinks as cos(lat), so keep CAR patches
  near the equator of the map's frame (or rotate the map first) for flat-sky statistics.

Array conventions: ``patch[..., row, col]``; rows increase with y (northwards, towards larger
latitude), columns with x (eastwards, towards larger longitude); pixel ``(row, col)`` sits at
``x = (col - (nx-1)/2) * d``, ``y = (row - (ny-1)/2) * d``. So ``patch`` is a map on
``FlatGeometry((ny, nx), pixel_size_arcmin)`` and all of :mod:`bayessky.sky` applies to it.

Maps may be RING or NESTED (``nest=True``), any Nside healpy accepts (NESTED needs a power of 2),
numpy arrays or torch tensors (results come back as the same kind), a single map (npix,) or a
stack (..., npix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import healpy as hp
import numpy as np
import torch

from .._validate import as_count, check_finite, check_positive
from .geometry import ARCMIN, FlatGeometry, _grid_shape

__all__ = ["PatchProjection", "cut_patch", "paste_patch", "anafast", "synfast", "synalm"]

_PROJECTIONS = ("gnomonic", "car")


def _to_numpy(x, name: str) -> tuple[np.ndarray, torch.Tensor | None]:
    """Array view of ``x`` plus the tensor it came from (to send results back as a tensor)."""
    # complex input would lose its imaginary part silently in the float conversion below
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name}: expected a real map, got dtype {x.dtype}")
        return x.detach().cpu().numpy(), x
    if np.iscomplexobj(x):
        raise TypeError(f"{name}: expected a real map, got a complex array")
    try:
        return np.asarray(x, dtype=float), None
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected an array or tensor, got {type(x).__name__}") from err


def _back(a: np.ndarray, like: torch.Tensor | None):
    if like is None:
        return a
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    return torch.as_tensor(a, dtype=dtype, device=like.device)


def _nside_of(m: np.ndarray, name: str = "hp_map") -> int:
    if m.ndim < 1 or not hp.isnpixok(m.shape[-1]):
        raise ValueError(f"{name}: last axis must be a valid HEALPix pixel count, got shape {m.shape}")
    return hp.npix2nside(m.shape[-1])


def _check_lmax(lmax, name: str = "lmax") -> int | None:
    """None or a whole number >= 0 (healpy fails with an IndexError on a negative lmax)."""
    if lmax is None:
        return None
    lmax = as_count(lmax, name)
    if lmax < 0:
        raise ValueError(f"{name}: must be >= 0, got {lmax}")
    return lmax


def _check_nest(nside: int, nest: bool) -> None:
    if nest and not hp.isnsideok(nside, nest=True):
        raise ValueError(f"nest: NESTED ordering needs a power-of-two Nside, got Nside {nside}")


@dataclass(frozen=True)
class PatchProjection:
    """Where a flat patch sits on the sphere: centre, grid shape, pixel size and projection.

    Returned by :func:`cut_patch` and consumed by :func:`paste_patch`.

    Arguments:
        centre: (lon, lat) of the patch centre in degrees.
        shape: (ny, nx) pixels.
        pixel_size_arcmin: side of a patch pixel in arcmin (in the projection plane).
        projection: ``"gnomonic"`` or ``"car"``.

    Example:
        >>> p = PatchProjection((30.0, -20.0), (4, 4), 60.0)
        >>> lon, lat = p.lonlat()
        >>> row, col = p.project(lon, lat)
        >>> bool(np.allclose(col[0], [0, 1, 2, 3]))
        True
    """

    centre: tuple[float, float]
    shape: tuple[int, int]
    pixel_size_arcmin: float
    projection: str = "gnomonic"

    def __post_init__(self):
        centre = self.centre
        if isinstance(centre, (str, bytes)) or np.ndim(centre) != 1 or len(centre) != 2:
            raise TypeError(f"centre: expected (lon, lat) in degrees, got {type(centre).__name__} {centre!r}")
        try:
            lon, lat = (float(v) for v in centre)
        except (TypeError, ValueError) as err:
            raise TypeError(f"centre: expected two numbers (lon, lat), got {centre!r}") from err
        # a NaN/inf centre would project every pixel to NaN and cut an all-NaN patch
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise ValueError(f"centre: must be finite, got {centre!r}")
        if not -90.0 <= lat <= 90.0:
            raise ValueError(f"centre: latitude must lie in [-90, 90] deg, got {lat}")
        object.__setattr__(self, "centre", (lon % 360.0, lat))
        object.__setattr__(self, "shape", _grid_shape(self.shape, "npix", min_side=2))
        size = self.pixel_size_arcmin
        if isinstance(size, (bool, str, bytes)) or np.ndim(size) != 0:
            raise TypeError(f"pixel_size_arcmin: expected a number, got {type(size).__name__} {size!r}")
        try:
            size = float(size)
        except (TypeError, ValueError) as err:
            raise TypeError(f"pixel_size_arcmin: expected a number, got {type(size).__name__}") from err
        if not (math.isfinite(size) and size > 0):
            raise ValueError(f"pixel_size_arcmin: must be > 0, got {self.pixel_size_arcmin!r}")
        object.__setattr__(self, "pixel_size_arcmin", size)
        if self.projection not in _PROJECTIONS:
            raise ValueError(f"projection: expected one of {_PROJECTIONS}, got {self.projection!r}")
        if self.projection == "car":
            half = 0.5 * (self.shape[0] - 1) * size / 60.0
            if abs(lat) + half > 90.0:
                raise ValueError(f"npix: a CAR patch at latitude {lat} deg of half-height {half:.3g} deg "
                                 "crosses a pole; use projection='gnomonic'")

    @property
    def geometry(self) -> FlatGeometry:
        """The flat periodic grid the patch lives on (arcmin pixels)."""
        return FlatGeometry(self.shape, self.pixel_size_arcmin, unit="arcmin")

    @property
    def _d(self) -> float:
        return self.pixel_size_arcmin * ARCMIN

    def _basis(self):
        lon0, lat0 = np.radians(self.centre)
        r0 = np.array([np.cos(lat0) * np.cos(lon0), np.cos(lat0) * np.sin(lon0), np.sin(lat0)])
        e_lon = np.array([-np.sin(lon0), np.cos(lon0), 0.0])
        e_lat = np.array([-np.sin(lat0) * np.cos(lon0), -np.sin(lat0) * np.sin(lon0), np.cos(lat0)])
        return r0, e_lon, e_lat

    def plane(self) -> tuple[np.ndarray, np.ndarray]:
        """(y, x) plane coordinates of the pixel centres in radians, each of shape (ny, nx)."""
        ny, nx = self.shape
        y = (np.arange(ny) - 0.5 * (ny - 1)) * self._d
        x = (np.arange(nx) - 0.5 * (nx - 1)) * self._d
        return tuple(np.meshgrid(y, x, indexing="ij"))

    def lonlat(self, rows=None, cols=None) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) in degrees of pixel centres (all, or at given fractional rows/cols)."""
        ny, nx = self.shape
        if rows is None:
            y, x = self.plane()
        else:
            y = (np.asarray(rows, dtype=float) - 0.5 * (ny - 1)) * self._d
            x = (np.asarray(cols, dtype=float) - 0.5 * (nx - 1)) * self._d
        if self.projection == "car":
            lon = (self.centre[0] + np.degrees(x)) % 360.0
            return lon, self.centre[1] + np.degrees(y)
        r0, e_lon, e_lat = self._basis()
        v = r0[:, None] + np.outer(e_lon, x.ravel()) + np.outer(e_lat, y.ravel())
        v /= np.linalg.norm(v, axis=0)
        lon = np.degrees(np.arctan2(v[1], v[0])) % 360.0
        lat = np.degrees(np.arcsin(np.clip(v[2], -1.0, 1.0)))
        return lon.reshape(x.shape), lat.reshape(x.shape)

    def project(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, col) of sky positions (degrees); NaN where the projection is undefined
        (the far hemisphere for gnomonic)."""
        lon = np.radians(np.asarray(lon, dtype=float))
        lat = np.radians(np.asarray(lat, dtype=float))
        ny, nx = self.shape
        if self.projection == "car":
            x = (lon - math.radians(self.centre[0]) + np.pi) % (2 * np.pi) - np.pi
            y = lat - math.radians(self.centre[1])
        else:
            r0, e_lon, e_lat = self._basis()
            v = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
            along = np.tensordot(r0, v, axes=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                ok = along > 1e-12
                x = np.where(ok, np.tensordot(e_lon, v, axes=1) / along, np.nan)
                y = np.where(ok, np.tensordot(e_lat, v, axes=1) / along, np.nan)
        return y / self._d + 0.5 * (ny - 1), x / self._d + 0.5 * (nx - 1)


def cut_patch(
    hp_map,
    centre: tuple[float, float],
    npix: int | tuple[int, int],
    pixel_size_arcmin: float,
    projection: str = "gnomonic",
    nest: bool = False,
    interpolation: str = "bilinear",
):
    """Cut a flat ``ny x nx`` patch from a HEALPix map.

    Arguments:
        hp_map: HEALPix map (npix_hp,) or stack (..., npix_hp), numpy or torch, any units.
        centre: (lon, lat) of the patch centre, degrees (Galactic l, b or RA, Dec: the map's frame).
        npix: pixels per side, or (ny, nx).
        pixel_size_arcmin: patch pixel side in arcmin.
        projection: ``"gnomonic"`` or ``"car"`` (see the module docstring).
        nest: the map is in NESTED ordering.
        interpolation: ``"bilinear"`` (healpy's 4-neighbour interpolation, as
            ``healpy.get_interp_val``) or ``"nearest"`` (value of the containing pixel).

    Returns:
        ``(patch, projection)``: patch of shape (..., ny, nx), of the input's kind (numpy/torch),
        and the :class:`PatchProjection` that locates it (its ``.geometry`` is the
        :class:`FlatGeometry`, ``.lonlat()`` the pixel centres, and :func:`paste_patch` takes it).

    Example:
        >>> m = np.arange(12 * 16 ** 2, dtype=float)
        >>> patch, proj = cut_patch(m, (10.0, 20.0), 8, 30.0)
        >>> patch.shape, proj.geometry.shape
        ((8, 8), (8, 8))
    """
    m, like = _to_numpy(hp_map, "hp_map")
    nside = _nside_of(m)
    _check_nest(nside, nest)
    proj = PatchProjection(centre, npix, pixel_size_arcmin, projection)
    lon, lat = proj.lonlat()
    if interpolation == "bilinear":
        pix, w = hp.get_interp_weights(nside, lon.ravel(), lat.ravel(), nest=nest, lonlat=True)
        vals = m[..., pix]  # (..., 4, n)
        used = vals[..., w > 0]
        out = (vals * w).sum(axis=-2)
    elif interpolation == "nearest":
        pix = hp.ang2pix(nside, lon.ravel(), lat.ravel(), nest=nest, lonlat=True)
        used = out = m[..., pix]
    else:
        raise ValueError(f"interpolation: expected 'bilinear' or 'nearest', got {interpolation!r}")
    bad = ~np.isfinite(used) | (np.abs(used) >= 1e30)  # hp.UNSEEN is -1.6375e30
    if bad.any():
        raise ValueError(f"hp_map: the patch touches {int(bad.sum())} UNSEEN or non-finite pixel values")
    return _back(out.reshape(*m.shape[:-1], *proj.shape), like), proj


def _footprint_pixels(nside: int, proj: PatchProjection, nest: bool) -> np.ndarray:
    """HEALPix pixels that may lie inside the patch: a disc around its centre reaching its border."""
    ny, nx = proj.shape
    rows = np.concatenate([np.zeros(nx), np.full(nx, ny - 1), np.arange(ny), np.arange(ny)])
    cols = np.concatenate([np.arange(nx), np.arange(nx), np.zeros(ny), np.full(ny, nx - 1)])
    lon, lat = proj.lonlat(rows, cols)
    vec = hp.ang2vec(proj.centre[0], proj.centre[1], lonlat=True)
    reach = np.arccos(np.clip(hp.ang2vec(lon, lat, lonlat=True) @ vec, -1.0, 1.0)).max()
    reach += 2 * hp.nside2resol(nside) + proj.pixel_size_arcmin * ARCMIN
    return hp.query_disc(nside, vec, min(reach, np.pi), nest=nest)


def paste_patch(target, patch, projection: PatchProjection, nest: bool = False, method: str = "interpolate"):
    """Write a flat patch back onto the sphere.

    Two rules, for two regimes:

    * ``method="interpolate"`` (default): every HEALPix pixel whose centre projects inside the
      rectangle spanned by the patch's pixel centres gets the patch's bilinear interpolation at
      that point. Every covered HEALPix pixel is filled whatever the relative resolutions, and for
      a smooth field the error is second order in the patch pixel size, so
      ``paste_patch(cut_patch(m))`` reproduces ``m`` on the covered pixels. The default because
      patches are usually cut at or above the HEALPix resolution.
    * ``method="average"``: each patch pixel centre is assigned to the HEALPix pixel containing
      it, and each HEALPix pixel receives the mean of its patch pixels (conserves the mean and
      averages down noise). Use it when patch pixels are much finer than HEALPix pixels;
      HEALPix pixels that receive no patch pixel centre are left untouched.

    Arguments:
        target: a HEALPix map (npix_hp,) / (..., npix_hp) to paste into (not modified: a copy is
            returned), or an Nside, for a new map of ``hp.UNSEEN`` outside the patch.
        patch: (..., ny, nx) values, numpy or torch, leading dims matching a stacked ``target``.
        projection: the :class:`PatchProjection` returned by :func:`cut_patch`.
        nest: the target map is in NESTED ordering.

    Returns:
        ``(hp_map, pixels)``: the updated map (kind of ``patch``) and the indices (in the map's
        ordering) of the HEALPix pixels written.
    """
    p, like = _to_numpy(patch, "patch")
    if not isinstance(projection, PatchProjection):
        raise TypeError(f"projection: expected a PatchProjection, got {type(projection).__name__}")
    if p.shape[-2:] != projection.shape:
        raise ValueError(f"patch: expected trailing shape {projection.shape}, got shape {p.shape}")
    # NaN/inf would be written into the sky map (and interpolated into neighbouring pixels)
    check_finite(torch.as_tensor(p), "patch")
    if np.ndim(target) == 0:  # a scalar is an Nside: 16.0 is 16, True or '16' are refused
        nside = as_count(target, "target")
        if not hp.isnsideok(nside):
            raise ValueError(f"target: not a valid Nside, got {nside}")
        out = np.full((*p.shape[:-2], hp.nside2npix(nside)), hp.UNSEEN)
    else:
        out, _ = _to_numpy(target, "target")
        out = np.array(out, dtype=float)  # copy
        nside = _nside_of(out, "target")
        if out.shape[:-1] != p.shape[:-2]:
            raise ValueError(f"patch: leading shape {p.shape[:-2]} does not match target's {out.shape[:-1]}")
    _check_nest(nside, nest)
    ny, nx = projection.shape
    if method == "interpolate":
        pix = _footprint_pixels(nside, projection, nest)
        lon, lat = hp.pix2ang(nside, pix, nest=nest, lonlat=True)
        row, col = projection.project(lon, lat)
        inside = np.isfinite(row) & (row >= 0) & (row <= ny - 1) & (col >= 0) & (col <= nx - 1)
        pix, row, col = pix[inside], row[inside], col[inside]
        r0 = np.minimum(np.floor(row).astype(int), ny - 2)
        c0 = np.minimum(np.floor(col).astype(int), nx - 2)
        fr, fc = row - r0, col - c0
        vals = ((1 - fr) * (1 - fc) * p[..., r0, c0] + (1 - fr) * fc * p[..., r0, c0 + 1]
                + fr * (1 - fc) * p[..., r0 + 1, c0] + fr * fc * p[..., r0 + 1, c0 + 1])
        out[..., pix] = vals
    elif method == "average":
        lon, lat = projection.lonlat()
        hpix = hp.ang2pix(nside, lon.ravel(), lat.ravel(), nest=nest, lonlat=True)
        pix, inverse, counts = np.unique(hpix, return_inverse=True, return_counts=True)
        flat = p.reshape(-1, ny * nx)
        sums = np.stack([np.bincount(inverse, weights=f, minlength=len(pix)) for f in flat])
        out[..., pix] = (sums / counts).reshape(*p.shape[:-2], len(pix))
    else:
        raise ValueError(f"method: expected 'interpolate' or 'average', got {method!r}")
    return _back(out, like), pix


def anafast(hp_map, lmax: int | None = None, nest: bool = False, iter: int = 3):
    """Angular power spectrum C_ell (map units^2 sr) of a HEALPix map or stack (..., npix).

    A thin wrapper of ``healpy.anafast`` (temperature only, ``pol=False``) that accepts NESTED
    maps, torch tensors and stacks. ``lmax`` defaults to 3 Nside - 1.

    Returns:
        C_ell from ell = 0, shape (..., lmax + 1), numpy or torch like the input.
    """
    m, like = _to_numpy(hp_map, "hp_map")
    nside = _nside_of(m)
    _check_nest(nside, nest)
    # healpy masks UNSEEN pixels but turns one NaN into NaN C_l
    check_finite(torch.as_tensor(m), "hp_map")
    lmax = _check_lmax(lmax)
    iter = as_count(iter, "iter")
    if iter < 0:
        raise ValueError(f"iter: must be >= 0, got {iter}")
    if nest:
        m = hp.reorder(m.reshape(-1, m.shape[-1]), n2r=True).reshape(m.shape)
    flat = m.reshape(-1, m.shape[-1])
    cls = np.stack([hp.anafast(f, lmax=lmax, iter=iter, pol=False) for f in flat])
    return _back(cls.reshape(*m.shape[:-1], cls.shape[-1]), like)


def synalm(cl, lmax: int | None = None, seed: int | np.random.Generator | None = None) -> np.ndarray:
    r"""Gaussian a_lm (healpy ordering) with E|a_lm|^2 = C_ell, from a seeded numpy generator.

    a_l0 is real with variance C_ell; for m > 0 real and imaginary parts each have C_ell / 2.
    """
    cl = np.asarray(cl, dtype=float)
    if cl.ndim != 1 or cl.size < 1:
        raise ValueError(f"cl: expected a 1-D array starting at ell = 0, got shape {cl.shape}")
    if (cl < 0).any() or not np.isfinite(cl).all():
        raise ValueError("cl: must be finite and >= 0")
    lmax = cl.size - 1 if lmax is None else _check_lmax(lmax)
    cl = np.pad(cl, (0, max(0, lmax + 1 - cl.size)))[: lmax + 1]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ell, m = hp.Alm.getlm(lmax)
    size = hp.Alm.getsize(lmax)
    z = rng.standard_normal(size) + 1j * rng.standard_normal(size)
    amp = np.sqrt(cl[ell] / 2.0)
    alm = z * amp
    m0 = m == 0
    alm[m0] = z.real[m0] * np.sqrt(cl[ell[m0]])
    return alm


def synfast(
    cl,
    nside: int,
    lmax: int | None = None,
    seed: int | np.random.Generator | None = None,
    nest: bool = False,
    fwhm_arcmin: float = 0.0,
    pixwin: bool = False,
) -> np.ndarray:
    """A Gaussian HEALPix map with angular spectrum ``cl`` (from ell = 0, map units^2 sr).

    Unlike ``healpy.synfast`` the draw comes from its own ``numpy.random.default_rng(seed)``
    (reproducible, no global state). ``lmax`` defaults to min(len(cl) - 1, 3 Nside - 1);
    ``fwhm_arcmin`` applies a Gaussian beam and ``pixwin`` the HEALPix pixel window.

    Returns:
        Map (npix,) in RING ordering, or NESTED with ``nest=True``.
    """
    nside = as_count(nside, "nside")  # int() would turn 16.7 into 16 and read '16'
    if not hp.isnsideok(nside):
        raise ValueError(f"nside: not a valid Nside, got {nside}")
    _check_nest(nside, nest)
    # a negative FWHM acts like the positive one in healpy and NaN fills the map with NaN
    check_positive(fwhm_arcmin, "fwhm_arcmin", strict=False)
    cl = np.asarray(cl, dtype=float)
    lmax = _check_lmax(lmax)
    lmax = min(cl.size - 1, 3 * nside - 1) if lmax is None else lmax
    alm = synalm(cl, lmax, seed)
    if pixwin:
        try:
            window = hp.pixwin(nside, lmax=lmax)
        except Exception as err:  # healpy downloads its window files on first use
            raise RuntimeError(f"pixwin: healpy could not load the Nside {nside} window ({err})") from err
        alm = hp.almxfl(alm, window)
    m = hp.alm2map(alm, nside, lmax=lmax, fwhm=math.radians(fwhm_arcmin / 60.0), pol=False)
    return hp.reorder(m, r2n=True) if nest else m
