"""Reading maps from .npy, .npz and FITS files, with one-line errors and no unpickling.

* ``.npy`` / ``.npz``: numpy's loader with ``allow_pickle=False`` (object arrays are refused,
  so a hostile file cannot run code).
* FITS images: ``astropy.io.fits`` (installed with healpy); the first HDU holding a 2-D or 3-D
  image, or the HDU named/numbered by ``key``.
* HEALPix FITS maps (binary tables): :func:`load_healpix` through ``healpy.read_map``, returned
  in RING ordering whatever the file's ordering.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence

import numpy as np

__all__ = ["load_maps", "load_healpix", "check_map_array"]

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


def _exists(path, name: str) -> str:
    # a regular file only: a FIFO or a device would block or stream forever in the readers
    from .._validate import check_regular_file

    return check_regular_file(path, name)


def check_map_array(
    arr: np.ndarray, name: str, *, ndim: Sequence[int] = (2, 3), allow_nan: bool = False,
    positive: bool = False,
) -> np.ndarray:
    """Refuse non-numeric arrays, a wrong number of dimensions, NaN/inf and (optionally) values <= 0.

    Works in chunks along the first axis so memory-mapped stacks are never loaded whole.
    """
    ndim = (ndim,) if isinstance(ndim, (int, np.integer)) else tuple(ndim)  # ndim=2 means (2,)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in tuple(ndim):
        raise ValueError(f"{name}: expected {' or '.join(f'{d}-D' for d in ndim)} maps "
                         f"(n, H, W) / (H, W), got shape {arr.shape}")
    if arr.size == 0:
        # a (0, H, W) stack or a zero-length axis: downstream code would "succeed" on no maps
        raise ValueError(f"{name}: empty array of shape {arr.shape} (no maps, or a zero-length axis)")
    if arr.dtype.kind != "f" and not positive:
        return arr
    n_nan = n_inf = n_bad = 0
    vmin = np.inf
    view = arr.reshape(1, -1) if arr.ndim < 2 else arr
    step = max(1, int(2**24 // max(1, int(np.prod(view.shape[1:])))))
    for i in range(0, view.shape[0], step):
        block = np.asarray(view[i:i + step])
        if arr.dtype.kind == "f":
            n_nan += int(np.isnan(block).sum())
            n_inf += int(np.isinf(block).sum())
        if positive:
            finite = block[np.isfinite(block)] if arr.dtype.kind == "f" else block
            n_bad += int((finite <= 0).sum())
            if finite.size:
                vmin = min(vmin, float(finite.min()))
    if (n_nan or n_inf) and not allow_nan:
        raise ValueError(f"{name}: contains {n_nan} NaN and {n_inf} inf values (of {arr.size})")
    if n_bad:
        raise ValueError(f"{name}: {n_bad} values are <= 0 (min {vmin:.6g}) but a log transform needs "
                         "positive maps")
    return arr


def _load_npy(path: str, name: str, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise ValueError(f"{name}: {path!r} holds Python objects; refusing to unpickle") from None
        raise ValueError(f"{name}: cannot read {path!r} as .npy ({str(err).splitlines()[0]})") from None
    except (OSError, EOFError) as err:
        raise ValueError(f"{name}: cannot read {path!r} as .npy ({str(err).splitlines()[0]})") from None


def _load_npz(path: str, key: str | None, name: str) -> np.ndarray:
    # A file that is not a zip archive falls through np.load's format sniffing to the pickle
    # branch, whose "allow_pickle=False" error would be misreported below as Python objects.
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{name}: cannot read {path!r} as .npz (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if key is None:
                if len(keys) == 1:
                    key = keys[0]
                elif "maps" in keys:
                    key = "maps"
                else:
                    raise ValueError(f"{name}: {path!r} holds arrays {keys}; pass key= (or name one 'maps')")
            if key not in keys:
                raise ValueError(f"{name}: key {key!r} not in {path!r} (available: {', '.join(keys)})")
            return z[key]
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise ValueError(f"{name}: {path!r}[{key!r}] holds Python objects; refusing to unpickle") \
                from None
        raise
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{name}: cannot read {path!r} as .npz ({str(err).splitlines()[0]})") from None


def _load_fits_image(path: str, key, name: str) -> np.ndarray:
    import warnings

    # astropy reads a truncated file's header, warns on stderr, then fails to reshape the short data
    # ("cannot reshape array of size 15"): the warnings are kept to report the truncation, the cause
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _read_fits_image(path, key, name)
        except (OSError, ValueError, TypeError, IndexError) as err:
            if str(err).startswith(f"{name}: "):
                raise
            trunc = [w for w in caught if "truncated" in str(w.message)]
            why = str(trunc[0].message) if trunc else (str(err).splitlines() or [type(err).__name__])[0]
            raise ValueError(f"{name}: cannot read {path!r} as FITS ({why})") from None


def _read_fits_image(path: str, key, name: str) -> np.ndarray:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        if key is not None:
            try:
                hdu = hdul[int(key) if str(key).lstrip("-").isdigit() else key]
            except (KeyError, IndexError):
                names = [h.name for h in hdul]
                raise ValueError(f"{name}: HDU {key!r} not in {path!r} (HDUs: {names})") from None
            candidates = [hdu]
        else:
            candidates = [h for h in hdul if getattr(h, "is_image", False) and h.data is not None
                          and h.data.ndim >= 2]
        if not candidates:
            if any(str(h.header.get("PIXTYPE", "")).upper() == "HEALPIX" for h in hdul):
                raise ValueError(f"{name}: {path!r} is a HEALPix map, not an image; use load_healpix "
                                 "and cut flat patches")
            raise ValueError(f"{name}: {path!r} has no 2-D or 3-D image HDU")
        hdu = candidates[0]
        if not getattr(hdu, "is_image", False) or hdu.data is None:
            raise ValueError(f"{name}: HDU {key!r} of {path!r} is not an image")
        # FITS is big-endian; a native-endian copy keeps torch.from_numpy working
        return np.asarray(hdu.data).astype(hdu.data.dtype.newbyteorder("="), copy=True)


def load_maps(
    path, key: str | int | None = None, *, ndim: Sequence[int] = (2, 3), allow_nan: bool = False,
    positive: bool = False, mmap: bool = False, name: str = "data",
) -> np.ndarray:
    """Load a map ``(H, W)`` or a stack ``(n, H, W)`` from .npy, .npz or a FITS image.

    Arguments:
        path: the file.
        key: .npz array name (default: the only array, else ``"maps"``) or FITS HDU name/index.
        ndim: accepted numbers of dimensions.
        allow_nan: keep NaN/inf (e.g. masked pixels) instead of refusing them.
        positive: refuse values <= 0 (needed before a log transform).
        mmap: memory-map a .npy file instead of reading it.
        name: the argument name used in error messages.

    Returns:
        a float array (float32 and float64 kept, integers converted to float64).
    """
    path = _exists(path, name)
    lower = path.lower()
    if lower.endswith(".npy"):
        arr = _load_npy(path, name, mmap)
    elif lower.endswith(".npz"):
        arr = _load_npz(path, None if key is None else str(key), name)
    elif lower.endswith(_FITS_SUFFIXES):
        arr = _load_fits_image(path, key, name)
    else:
        raise ValueError(f"{name}: unsupported file type {os.path.basename(path)!r} "
                         "(expected .npy, .npz or .fits)")
    if arr.size == 0:  # here too, to name the file
        raise ValueError(f"{name}: {path!r} holds an empty array of shape {arr.shape} (no maps, or a "
                         "zero-length axis)")
    arr = check_map_array(arr, name, ndim=ndim, allow_nan=allow_nan, positive=positive)
    if arr.dtype.kind != "f" or arr.dtype.itemsize < 4:
        arr = arr.astype(np.float64)
    return arr


def load_healpix(path, field: int | Sequence[int] = 0, *, nest: bool = False,
                 name: str = "data") -> np.ndarray:
    """Read a HEALPix map (any Nside, RING or NESTED on disk) with ``healpy.read_map``.

    Returns ``(npix,)`` for one field or ``(n_fields, npix)``, float64, in RING ordering
    (NESTED with ``nest=True``); unobserved pixels keep healpy's ``UNSEEN`` value.
    """
    import healpy as hp

    path = _exists(path, name)
    try:
        m = hp.read_map(path, field=field, nest=nest, dtype=np.float64)
    except Exception as err:  # healpy raises a zoo of types for bad files
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{name}: cannot read {path!r} as a HEALPix map ({msg})") from None
    m = np.asarray(m, dtype=np.float64)
    if not np.isfinite(m).all():
        raise ValueError(f"{name}: HEALPix map {path!r} contains {int(np.isnan(m).sum())} NaN and "
                         f"{int(np.isinf(m).sum())} inf values")
    return m
