"""Per-map inputs of a survey run: the data, a mask and a noise rms for each of n maps.

Sources (all validated here, before any output exists; errors are one line naming the flag and
both shapes):

- ``--data`` a map ``(*map)`` or a stack ``(n, *map)`` (.npy is memory-mapped, so a stack of
  thousands of maps is read one map at a time);
- ``--mask`` one map ``(*map)`` or ``(H, W)`` shared by all, or a stack ``(n, *map)`` / ``(n, H, W)``;
  values in [0, 1], 1 = observed;
- ``--noise`` a number, a map or a stack of per-pixel noise rms maps (same rules as the mask), > 0;
- ``--data manifest.csv``: one row per map, columns ``data`` (a file), optional ``mask`` (a file),
  ``noise`` (a number or a file) and any further numeric columns, the true parameter values
  (drawn on corner plots). Relative paths are relative to the CSV's folder.

A map whose data hold NaN/inf is not an input error of the run: :meth:`SurveyInputs.get` returns it
with an ``error``, and the run records that map as failed while the others complete.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SurveyError
from .model_spec import file_sha256

__all__ = ["MapInput", "SurveyInputs", "load_inputs"]


@dataclass
class MapInput:
    """Map ``index``: data ``(*map)``, mask (None or an array), noise (None, a float or an array),
    truths ``{name: value}``, and ``error`` (a one-line reason the map cannot be run, or None)."""

    index: int
    data: np.ndarray
    mask: np.ndarray | None = None
    noise: float | np.ndarray | None = None
    truths: dict = field(default_factory=dict)
    error: str | None = None


def _read(path: str | Path, flag: str, key: str | None = None, mmap: bool = True) -> np.ndarray:
    from ..data.io import load_maps

    try:
        arr = load_maps(str(path), key=key, ndim=range(1, 6), allow_nan=True, name=flag,
                        mmap=mmap and str(path).lower().endswith(".npy"))
    except (OSError, ValueError, KeyError, TypeError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        msg = msg[len(flag) + 2:] if msg.startswith(f"{flag}: ") else msg  # name the flag once
        raise SurveyError(f"{flag}: cannot read {str(path)!r}: {msg}") from err
    return arr


def _regular(path, flag: str) -> None:
    """A regular file (a FIFO would block the read), as a SurveyError naming the flag."""
    from .._validate import check_regular_file

    try:
        check_regular_file(path, flag)
    except (OSError, ValueError) as err:
        raise SurveyError(str(err)) from None


def _per_map(arr: np.ndarray, flag: str, n: int, map_shape: tuple) -> bool:
    """Whether ``arr`` is a stack of one per map (True) or one shared by all (False); else an error."""
    shared = (map_shape, map_shape[-2:])
    if arr.shape in shared:
        return False
    if arr.shape in ((n, *map_shape), (n, *map_shape[-2:])):
        return True
    raise SurveyError(f"{flag}: shape {arr.shape} matches neither one map {map_shape} (or {map_shape[-2:]}) "
                      f"nor the {n} maps' stack {(n, *map_shape)}")


def _check_mask(mask: np.ndarray, flag: str) -> None:
    bad = ~np.isfinite(mask) | (mask < 0) | (mask > 1)
    if bad.any():
        raise SurveyError(f"{flag}: values must lie in [0, 1] ({int(bad.sum())} do not)")


def _check_noise(noise, flag: str) -> None:
    a = np.asarray(noise, dtype=float)
    bad = ~np.isfinite(a) | (a <= 0)
    if bad.any():
        raise SurveyError(f"{flag}: noise rms must be finite and > 0 ({int(bad.sum())} values are not)")


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _finite_error(data: np.ndarray) -> str | None:
    n_bad = int((~np.isfinite(data)).sum())
    return f"data: {n_bad} NaN/inf values" if n_bad else None


class SurveyInputs:
    """The n maps of a run and where they come from; :meth:`get` reads map i, :meth:`hashes` names the
    input files by sha256 (the run manifest's ``inputs``)."""

    def __init__(self, n: int, map_shape: tuple, getter, hashed: dict):
        self.n = n
        self.map_shape = tuple(map_shape)
        self._get = getter
        self._hashed = hashed

    def get(self, i: int) -> MapInput:
        """Map ``i`` (float64 copies, safe to send to a worker)."""
        if not 0 <= i < self.n:
            raise IndexError(f"map index {i} outside 0..{self.n - 1}")
        return self._get(i)

    def hashes(self) -> dict:
        """``{role: sha256 of the file, or the number}``: what identifies these inputs in run.json."""
        out = {}
        for role, value in self._hashed.items():
            if isinstance(value, dict):
                out[role] = {k: file_sha256(v) for k, v in value.items()}
            elif isinstance(value, Path):
                out[role] = file_sha256(value)
            else:
                out[role] = value
        return out


def _map_shape_of(stack_or_map: np.ndarray, flag: str, expected: tuple | None) -> tuple[int, tuple]:
    """(n, map shape) of ``--data``: one map or a stack of maps of ``expected`` shape (2-D by default)."""
    event_ndim = len(expected) if expected is not None else 2
    if stack_or_map.ndim not in (event_ndim, event_ndim + 1):
        one = "(H, W)" if expected is None else str(tuple(expected))
        raise SurveyError(f"{flag}: expected one map {one} or a stack (n, *map), "
                          f"got shape {stack_or_map.shape}")
    shape = stack_or_map.shape[-event_ndim:]
    if expected is not None and tuple(shape) != tuple(expected):
        raise SurveyError(f"{flag}: the script expects maps of shape {tuple(expected)}, got {tuple(shape)}")
    n = 1 if stack_or_map.ndim == event_ndim else stack_or_map.shape[0]
    return n, tuple(shape)


def load_inputs(data: str, *, mask: str | None = None, noise: str | None = None, key: str | None = None,
                map_shape: tuple | None = None) -> SurveyInputs:
    """The inputs of ``--data`` (a map file, a stack or a manifest .csv), ``--mask`` and ``--noise``.

    ``map_shape``: the model's ``MAP_SHAPE`` (one observation's shape), or None for 2-D maps.
    """
    if str(data).lower().endswith(".csv"):
        if mask is not None or noise is not None:
            flag = "--mask" if mask is not None else "--noise"
            raise SurveyError(f"{flag}: with a manifest --data {data!r}, give it in the manifest's "
                              f"'{flag[2:]}' column")
        return _from_manifest(Path(data), map_shape)
    arr = _read(data, "--data", key)
    n, shape = _map_shape_of(arr, "--data", map_shape)
    stack = arr if arr.ndim == len(shape) + 1 else arr[None]
    if n == 1 and _finite_error(stack[0]):  # one map: an input error, as before surveys
        raise SurveyError(f"--data: {data!r} contains {int((~np.isfinite(stack[0])).sum())} NaN/inf values")
    hashed: dict = {"data": Path(data)}
    m = per_mask = None
    if mask is not None:
        m = _read(mask, "--mask")
        per_mask = _per_map(m, "--mask", n, shape)
        _check_mask(m, "--mask")
        hashed["mask"] = Path(mask)
    z = per_noise = None
    if noise is not None:
        value = _number(noise)
        if value is not None:
            z, per_noise = value, False
            hashed["noise"] = value
        else:
            z = _read(noise, "--noise")
            per_noise = _per_map(z, "--noise", n, shape)
            hashed["noise"] = Path(noise)
        _check_noise(z, "--noise")

    def getter(i: int) -> MapInput:
        d = np.array(stack[i], dtype=np.float64)
        mi = None if m is None else np.array(m[i] if per_mask else m, dtype=np.float64)
        if z is None or isinstance(z, float):
            zi = z
        else:
            zi = np.array(z[i] if per_noise else z, dtype=np.float64)
        return MapInput(i, d, mi, zi, {}, _finite_error(d))

    return SurveyInputs(n, shape, getter, hashed)


def _from_manifest(path: Path, map_shape: tuple | None) -> SurveyInputs:
    """One map per row of a CSV with columns data, [mask], [noise], [truth columns...]."""
    flag = f"--data {path.name}"
    _regular(path, "--data")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
        columns = list(rows[0]) if rows else []
    if not rows or "data" not in columns:
        raise SurveyError(f"{flag}: expected a header with a 'data' column and one row per map "
                          f"(columns: data, mask, noise, truths...), got columns {columns}")
    truth_cols = [c for c in columns if c not in ("data", "mask", "noise")]
    base = path.parent
    files: dict[str, Path] = {}
    entries = []
    shape = map_shape
    for r, row in enumerate(rows, start=1):
        where = f"{flag} row {r}"

        def resolve(text, col, where=where):
            p = Path(text.strip())
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise SurveyError(f"{where}: {col} file {str(p)!r} does not exist")
            files[str(p)] = p
            return p

        dpath = resolve(row["data"] or "", "data")
        d = _read(dpath, f"{where} data")
        n_here, s = _map_shape_of(d, f"{where} data", shape)
        if n_here != 1:
            raise SurveyError(f"{where} data: expected one map {s}, got a stack of shape {d.shape}")
        shape = s
        mpath = resolve(row["mask"], "mask") if (row.get("mask") or "").strip() else None
        if mpath is not None:
            mk = _read(mpath, f"{where} mask")
            if mk.shape not in (shape, shape[-2:]):
                raise SurveyError(f"{where} mask: shape {mk.shape} does not match the map's {shape}")
            _check_mask(mk, f"{where} mask")
        ntext = (row.get("noise") or "").strip()
        noise = _number(ntext) if ntext else None
        if ntext and noise is None:
            noise = resolve(ntext, "noise")
            nz = _read(noise, f"{where} noise")
            if nz.shape not in (shape, shape[-2:]):
                raise SurveyError(f"{where} noise: shape {nz.shape} does not match the map's {shape}")
            _check_noise(nz, f"{where} noise")
        elif noise is not None:
            _check_noise(noise, f"{where} noise")
        truths = {}
        for c in truth_cols:
            text = (row.get(c) or "").strip()
            if text:
                value = _number(text)
                if value is None:
                    raise SurveyError(f"{where}: truth column {c!r} holds {text!r}, not a number")
                truths[c] = value
        entries.append((dpath, mpath, noise, truths))

    def getter(i: int) -> MapInput:
        dpath, mpath, noise, truths = entries[i]
        d = np.array(_read(dpath, "--data"), dtype=np.float64).reshape(shape)
        mk = None if mpath is None else np.array(_read(mpath, "--mask"), dtype=np.float64)
        nz = noise if not isinstance(noise, Path) else np.array(_read(noise, "--noise"), dtype=np.float64)
        return MapInput(i, d, mk, nz, dict(truths), _finite_error(d))

    return SurveyInputs(len(entries), shape, getter, {"manifest": path, "files": files})
