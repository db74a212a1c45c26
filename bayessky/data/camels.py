"""CAMELS Multifield Dataset maps and parameters: loading, cutting/downsampling, simulation-wise splits.

Two layouts are read (CMD, the CAMELS Multifield Dataset: https://camels.readthedocs.io/en/latest/CMD.html;
HIGlow: Friedman & Hassan 2022, https://github.com/friedmanroy/HI-generation):

* CMD: ``Maps_{field}_{suite}_{set}_z=0.00.npy``, float32 ``(n_sims * 15, 256, 256)``, with
  ``params_{set}_{suite}.txt`` (``np.loadtxt`` -> ``(n_sims, 6)``: Omega_m, sigma_8, A_SN1,
  A_AGN1, A_SN2, A_AGN2). Map ``i`` belongs to simulation ``i // 15``.
* HIGlow: ``Images_HI_IllustrisTNG_z=5.99.npy``, ``(n_sims * 15, 64, 64)``, with
  ``CAMELs_params.csv`` (a header, a name column ``LH_k``, the six parameters, a ``seed`` column).

The 15 maps of a simulation share its parameters, so a train/test split must keep whole
simulations together (HIGlow split within simulations, so its test maps had training
parameters): :func:`split_by_simulation`.

Resizing to the model size: ``mode="cut"`` tiles each map into ``(H/size) * (W/size)`` sub-maps
(all from the same simulation; note the cut-outs are *not* periodic, so do not train them with
cyclic shifts), ``mode="downsample"`` averages ``(H/size) x (W/size)`` pixel blocks (a periodic
map stays periodic).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .io import _exists, _load_npy, check_map_array, load_maps

__all__ = [
    "CAMELS_PARAM_NAMES",
    "CAMELS_LH_RANGES",
    "CamelsData",
    "load_camels",
    "load_params",
    "cut_maps",
    "downsample_maps",
    "split_by_simulation",
    "TrainingData",
    "load_training_data",
]

CAMELS_PARAM_NAMES = ("Omega_m", "sigma_8", "A_SN1", "A_AGN1", "A_SN2", "A_AGN2")

# the Latin-hypercube prior box of CAMELS (Villaescusa-Navarro et al. 2021, https://arxiv.org/abs/2010.00619;
# https://camels.readthedocs.io/en/latest/parameters.html)
CAMELS_LH_RANGES = {
    "Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0), "A_SN1": (0.25, 4.0),
    "A_AGN1": (0.25, 4.0), "A_SN2": (0.5, 2.0), "A_AGN2": (0.5, 2.0),
}

_CHUNK_BYTES = 1 << 28  # resize 256 MiB of maps at a time so a memory-mapped stack is never read whole


class CamelsData(NamedTuple):
    """Maps with their per-map parameters and the simulation each comes from.

    Attributes:
        maps: ``(n, H, W)`` float32 (a read-only memory map when nothing had to be copied).
        params: ``(n, n_params)`` float64, the row of the map's simulation.
        sim_index: ``(n,)`` int64, the simulation (row of the parameter file) of each map.
        names: the parameter names.
    """

    maps: np.ndarray
    params: np.ndarray
    sim_index: np.ndarray
    names: tuple[str, ...]


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_params(path, name: str = "params") -> tuple[np.ndarray, tuple[str, ...]]:
    """Read a parameter table: CMD ``.txt`` (whitespace columns), HIGlow's ``.csv`` or a ``.npy``.

    Returns ``(params (n_sims, k) float64, names)``. In a CSV, non-numeric columns (the
    simulation name) and a ``seed`` column are dropped.
    """
    path = _exists(path, name)
    if path.lower().endswith(".csv"):
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
        if not rows:
            raise ValueError(f"{name}: {path!r} is empty")
        header = None if all(_is_float(c) for c in rows[0] if c.strip()) else rows.pop(0)
        if not rows:
            raise ValueError(f"{name}: {path!r} has a header but no rows")
        width = len(rows[0])
        if any(len(r) != width for r in rows):
            bad = next(i for i, r in enumerate(rows) if len(r) != width)
            raise ValueError(f"{name}: row {bad + 1} of {path!r} has {len(rows[bad])} fields, not {width}")
        keep = [j for j in range(width) if all(_is_float(r[j]) for r in rows)
                and not (header and j < len(header) and header[j].strip().lower() == "seed")]
        params = np.array([[float(r[j]) for j in keep] for r in rows], dtype=np.float64)
        labels = [header[j].strip() if header and j < len(header) else "" for j in keep]
    elif path.lower().endswith(".npy"):
        params = np.load(path, allow_pickle=False)
        if params.dtype.kind not in "fiu" or params.ndim not in (1, 2):
            raise ValueError(f"{name}: {path!r} must hold a numeric (n,) or (n, k) table, got "
                             f"{params.dtype} {params.shape}")
        params = params.astype(np.float64).reshape(params.shape[0], -1)
        labels = [""] * params.shape[1]
    else:
        try:
            params = np.loadtxt(path, ndmin=2, dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"{name}: cannot read {path!r} as a numeric table "
                             f"({str(err).splitlines()[0]})") from None
        labels = [""] * params.shape[1]
    if params.size == 0:
        raise ValueError(f"{name}: {path!r} holds no parameters")
    if not np.isfinite(params).all():
        raise ValueError(f"{name}: {path!r} contains {int((~np.isfinite(params)).sum())} non-finite values")
    if all(labels):
        names = tuple(labels)
    elif params.shape[1] <= len(CAMELS_PARAM_NAMES):
        names = CAMELS_PARAM_NAMES[: params.shape[1]]
    else:
        names = tuple(f"p{j}" for j in range(params.shape[1]))
    return params, names


def _resize_factor(shape: tuple[int, ...], size: int, mode: str) -> tuple[int, int]:
    h, w = shape[-2:]
    if size <= 0 or h % size or w % size:
        raise ValueError(f"size: {mode} needs a size dividing the map size {h}x{w}, got {size}")
    return h // size, w // size


def cut_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """Tile ``(n, H, W)`` into ``(n * (H/size) * (W/size), size, size)``, map-major, tiles row-major."""
    fy, fx = _resize_factor(maps.shape, size, "cut")
    n = maps.shape[0]
    out = np.empty((n * fy * fx, size, size), dtype=maps.dtype)
    step = max(1, _CHUNK_BYTES // max(1, maps[0].nbytes))
    for i in range(0, n, step):
        block = np.asarray(maps[i:i + step])
        m = block.shape[0]
        tiles = block.reshape(m, fy, size, fx, size).transpose(0, 1, 3, 2, 4)
        out[i * fy * fx:(i + m) * fy * fx] = tiles.reshape(m * fy * fx, size, size)
    return out


def downsample_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """Average ``(H/size) x (W/size)`` pixel blocks: ``(n, H, W)`` -> ``(n, size, size)``."""
    fy, fx = _resize_factor(maps.shape, size, "downsample")
    n = maps.shape[0]
    out = np.empty((n, size, size), dtype=maps.dtype)
    step = max(1, _CHUNK_BYTES // max(1, maps[0].nbytes))
    for i in range(0, n, step):
        block = np.asarray(maps[i:i + step], dtype=np.float64)
        out[i:i + step] = block.reshape(block.shape[0], size, fy, size, fx).mean(axis=(2, 4))
    return out


def load_camels(
    maps_path,
    params_path,
    size: int | None = None,
    mode: str = "cut",
    maps_per_sim: int = 15,
    mmap: bool = True,
    *,
    sims: Sequence[int] | None = None,
    positive: bool = False,
) -> CamelsData:
    """Load CAMELS maps and parameters, optionally for some simulations, resized to ``size``.

    Arguments:
        maps_path: the ``.npy`` stack ``(n_sims * maps_per_sim, H, W)``.
        params_path: the parameter table (``.txt`` or HIGlow ``.csv``), one row per simulation.
        size: output side in pixels (``None``: keep ``H x W``).
        mode: ``"cut"`` (tiles, ``(H/size)^2`` sub-maps per map) or ``"downsample"`` (block mean).
        maps_per_sim: maps per simulation (15 in CMD; map ``i`` uses row ``i // maps_per_sim``).
        mmap: memory-map the stack (only the selected maps are read).
        sims: simulations (parameter rows) to load, in this order; ``None``: all.
        positive: refuse maps with values <= 0 (set it when a log transform follows).

    Returns:
        :class:`CamelsData` ``(maps, params, sim_index, names)``.

    Example:
        >>> maps, params, sim, names = load_camels(
        ...     "Maps_HI_IllustrisTNG_LH_z=0.00.npy", "params_LH_IllustrisTNG.txt", size=64
        ... )  # doctest: +SKIP
    """
    if mode not in ("cut", "downsample"):
        raise ValueError(f"mode: expected 'cut' or 'downsample', got {mode!r}")
    if int(maps_per_sim) != maps_per_sim or maps_per_sim < 1:
        raise ValueError(f"maps_per_sim: expected a positive integer, got {maps_per_sim!r}")
    maps_per_sim = int(maps_per_sim)
    maps_path = _exists(maps_path, "maps")
    if not maps_path.lower().endswith(".npy"):
        raise ValueError(f"maps: expected a CAMELS .npy stack, got {os.path.basename(maps_path)!r}")
    params, names = load_params(params_path)
    maps = _load_npy(maps_path, "maps", mmap)
    if maps.ndim != 3:
        raise ValueError(f"maps: expected a stack (n_maps, H, W), got shape {maps.shape}")
    if maps.dtype.kind != "f":
        raise ValueError(f"maps: expected float maps, got dtype {maps.dtype}")
    n_sims = params.shape[0]
    if maps.shape[0] != maps_per_sim * n_sims:
        raise ValueError(f"maps: {maps.shape[0]} maps but params has {n_sims} rows x {maps_per_sim} "
                         f"maps per simulation = {maps_per_sim * n_sims}")
    if sims is None:
        sims_arr = np.arange(n_sims)
    else:
        sims_arr = np.asarray(sims, dtype=np.int64).reshape(-1)
        if sims_arr.size and (sims_arr.min() < 0 or sims_arr.max() >= n_sims):
            raise ValueError(f"sims: simulation indices must lie in [0, {n_sims}), got "
                             f"range [{sims_arr.min()}, {sims_arr.max()}]")
    if sims is not None:
        rows = (sims_arr[:, None] * maps_per_sim + np.arange(maps_per_sim)[None, :]).reshape(-1)
        maps = maps[rows]  # fancy indexing reads only these maps from the memory map
    sim_index = np.repeat(sims_arr, maps_per_sim)
    check_map_array(maps, "maps", ndim=(3,), positive=positive)
    if size is not None and int(size) != size:
        raise ValueError(f"size: expected an integer, got {size!r}")
    if size is not None and (int(size), int(size)) != maps.shape[1:]:
        size = int(size)
        if mode == "cut":
            per = math.prod(_resize_factor(maps.shape, size, mode))
            maps = cut_maps(maps, size)
            sim_index = np.repeat(sim_index, per)
        else:
            maps = downsample_maps(maps, size)
    if maps.dtype != np.float32:
        maps = maps.astype(np.float32)
    return CamelsData(maps, params[sim_index], sim_index.astype(np.int64), tuple(names))


def split_by_simulation(
    sim_index, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Split map indices into groups (train, validation, test, ...) of whole simulations.

    The distinct simulations are shuffled with ``numpy.random.default_rng(seed)`` and dealt out in
    proportion to ``fractions`` (largest-remainder rounding; every positive fraction gets at
    least one simulation when there are enough), so no parameter set appears in two groups.

    Returns:
        one sorted int64 array of map indices per fraction.

    Example:
        >>> sim = np.repeat(np.arange(10), 15)
        >>> [len(i) // 15 for i in split_by_simulation(sim, (0.8, 0.1, 0.1))]
        [8, 1, 1]
    """
    sim_index = np.asarray(sim_index).reshape(-1)
    frac = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if frac.size == 0 or (frac < 0).any() or not np.isfinite(frac).all() or abs(frac.sum() - 1) > 1e-6:
        raise ValueError(f"fractions: expected non-negative numbers summing to 1, got {list(fractions)}")
    unique = np.unique(sim_index)
    n = unique.size
    counts = np.floor(frac * n).astype(int)
    order = np.argsort(-(frac * n - counts), kind="stable")
    for j in order[: n - counts.sum()]:
        counts[j] += 1
    # make sure no requested group is empty while another has spare simulations
    for j in np.flatnonzero((frac > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[j] += 1
    perm = np.random.default_rng(seed).permutation(unique)
    edges = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        out.append(np.flatnonzero(np.isin(sim_index, perm[a:b])).astype(np.int64))
    return tuple(out)


class TrainingData(NamedTuple):
    """What :func:`load_training_data` returns.

    Attributes:
        maps: ``(n, H, W)`` float maps (resized to ``size``).
        params: ``(n, k)`` float64 per-map parameters, or None.
        names: the parameter names (None without parameters).
        sim_index: ``(n,)`` the simulation of each map (maps of one simulation share parameters).
        cut: whether the maps are cut-out tiles (not periodic: train them without cyclic shifts).
        info: provenance for a model card: ``files``, ``layout`` (``"camels"`` or ``"maps"``),
            ``n_sims``, and ``maps_per_sim`` (CAMELS) or ``family`` / ``generator_version`` (an
            ``.npz`` written by ``bayessky simulate``).
    """

    maps: np.ndarray
    params: np.ndarray | None
    names: list[str] | None
    sim_index: np.ndarray
    cut: bool
    info: dict


def load_training_data(
    data,
    params=None,
    *,
    key: str | None = None,
    size: int | None = None,
    mode: str = "cut",
    maps_per_sim: int | None = None,
) -> TrainingData:
    """Maps, per-map parameters and simulation indices for training, whatever the file layout.

    * CAMELS: ``data`` an ``.npy`` stack and ``params`` a table with one row per simulation
      (CMD ``.txt``, HIGlow ``.csv``; also one row per map): ``maps_per_sim`` maps share each row
      (default: the map count over the row count), read by :func:`load_camels`.
    * plain maps: an ``.npy``/``.npz``/FITS map or stack (:func:`bayessky.data.load_maps`, ``key``
      names the array or HDU) with ``params`` one row per map, or, in an ``.npz`` without
      ``params``, a ``params`` array (with ``param_names``) or the per-map float arrays such as
      ``omega_m`` and ``sigma_8`` that ``bayessky simulate hi-toy`` writes; an ``.npz`` may also
      hold ``sim_index``.

    ``size`` resizes to ``size x size`` by ``mode``: ``"cut"`` tiles (each tile keeps its map's
    simulation and parameters) or ``"downsample"`` (block mean). Errors name the argument
    (``data``, ``params``, ``size``, ``mode``, ``maps_per_sim``; ``maps`` for the CAMELS stack).
    """
    if mode not in ("cut", "downsample"):
        raise ValueError(f"mode: expected 'cut' or 'downsample', got {mode!r}")
    data = _exists(data, "data")
    if params is not None:
        params = _exists(params, "params")
    if params is not None and data.lower().endswith(".npy"):
        return _load_camels_layout(data, params, size, mode, maps_per_sim)
    return _load_map_stack(data, params, key, size, mode)


def _load_camels_layout(data: str, params: str, size, mode: str, maps_per_sim) -> TrainingData:
    """An ``.npy`` stack with a parameter table: ``maps_per_sim`` maps share each row."""
    head = _load_npy(data, "data", mmap=True)
    # the row count below needs a stack; a 0-d or 1-d file would fail there with an IndexError
    if head.ndim != 3 or 0 in head.shape:
        raise ValueError(f"data: expected a stack of maps (n, H, W) with a parameter table, "
                         f"got shape {head.shape}")
    n_maps = head.shape[0]
    rows = load_params(params)[0].shape[0]
    per = maps_per_sim or (n_maps // rows if n_maps % rows == 0 else None)
    if per is None:
        raise ValueError(f"params: {rows} rows do not divide the {n_maps} maps of data")
    d = load_camels(data, params, size=size, mode=mode, maps_per_sim=per)
    info = {"files": [os.path.basename(data), os.path.basename(params)], "layout": "camels",
            "maps_per_sim": per, "n_sims": int(np.unique(d.sim_index).size)}
    cut = size is not None and mode == "cut" and (size, size) != tuple(head.shape[1:])
    return TrainingData(np.asarray(d.maps), d.params, list(d.names), d.sim_index, cut, info)


def _npz_extras(path: str, key: str | None, n_maps: int, with_params: bool, info: dict):
    """(params, names, sim_index) stored beside the maps in an ``.npz``; fills ``info``."""
    params = names = sim = None
    with np.load(path, allow_pickle=False) as z:
        for k in ("family", "version", "generator_version"):
            if k in z.files and z[k].ndim == 0:
                info["family" if k == "family" else "generator_version"] = z[k].item()
        if "sim_index" in z.files:
            sim = np.asarray(z["sim_index"]).reshape(-1)
        if not with_params:
            return params, names, sim
        if "params" in z.files:
            params = np.asarray(z["params"], dtype=np.float64)
            params = params[:, None] if params.ndim == 1 else params
            names = [str(s) for s in z["param_names"]] if "param_names" in z.files else None
        else:
            cols = [k for k in z.files if k not in ("maps", key, "sim_index")
                    and z[k].ndim == 1 and z[k].shape[0] == n_maps and z[k].dtype.kind == "f"]
            if cols:
                params = np.column_stack([z[k] for k in cols]).astype(np.float64)
                names = cols
    return params, names, sim


def _load_map_stack(data: str, params: str | None, key, size, mode: str) -> TrainingData:
    """A map or stack, one simulation per map unless an ``.npz`` holds ``sim_index``."""
    maps = load_maps(data, key=key, ndim=(2, 3), name="data")
    maps = maps[None] if maps.ndim == 2 else maps
    info: dict = {"files": [os.path.basename(data)]}
    table, names, sim = None, None, None
    if data.lower().endswith(".npz"):
        table, names, sim = _npz_extras(data, key, maps.shape[0], params is None, info)
    sim = np.arange(maps.shape[0]) if sim is None else sim
    if params is not None:
        table = load_params(params)[0]
        info["files"].append(os.path.basename(params))
    if table is not None:
        if table.shape[0] != maps.shape[0]:
            raise ValueError(f"params: {table.shape[0]} rows for {maps.shape[0]} maps")
        if names is None or len(names) != table.shape[1]:
            names = list(CAMELS_PARAM_NAMES[: table.shape[1]]) if table.shape[1] <= 6 else \
                [f"p{j}" for j in range(table.shape[1])]
    if sim.shape[0] != maps.shape[0]:
        raise ValueError(f"data: sim_index has {sim.shape[0]} entries for {maps.shape[0]} maps")
    cut = False
    if size is not None and size != maps.shape[-1]:
        if mode == "cut":
            per = math.prod(_resize_factor(maps.shape, size, mode))
            maps = cut_maps(maps, size)
            sim = np.repeat(sim, per)
            table = None if table is None else np.repeat(table, per, axis=0)
            cut = True
        else:
            maps = downsample_maps(maps, size)
    info.update(layout="maps", n_sims=int(np.unique(sim).size))
    return TrainingData(maps, table, names, sim, cut, info)
